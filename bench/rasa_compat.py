"""Compatibility with Rasa, measured: Rasa 3.6 and deltatrain judge the same projects.

Usage (by hand; never run by the tests)::

    python bench/rasa_compat.py --rasa-venv ../rasa-venv \\
        --projects ../shared/rasa-examples --fixtures ../rasa-fixtures \\
        [--rule-cases] [--work /tmp/compat] [--markdown table.md] [--json verdicts.json]

``--projects DIR``: every sub-folder with a ``config.yml``, a domain and a ``data/`` folder
is a project, judged as it is. ``--fixtures DIR``: every YAML file below ``DIR`` is wrapped
into a minimal project in ``--work`` (nothing is written next to the fixtures), by what
the file holds:

* a domain: the file is ``domain.yml``, with an NLU file naming its intents;
* stories or rules: ``data/stories.yml``, with a domain derived from the names they use
  (intents, entities, actions, responses, forms, slots typed by their values);
* NLU data: ``data/nlu.yml``, with a domain of its intents and entities;
* a config (a folder named ``*config*``, or ``pipeline``/``policies`` keys): the file is
  ``config.yml`` of a small fixed project.

``--rule-cases``: the regression table of ``tests/test_rule_check.py``, one project per case.

Wrapped projects use a config with MemoizationPolicy and RulePolicy, so that Rasa's
RulePolicy checks run. Rasa's verdict comes from ``bench/rasa_oracle.py``, run with
Rasa's own Python (``rasa data validate``, then the RulePolicy training of
``rasa train core``: ``InvalidRule`` counts as a rejection); deltatrain's from
``python -m pipeline data validate`` (exit code 0 = accepted). The table lists accepted
by both, rejected by both (with both messages) and every disagreement.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import yaml

ROOT = Path(__file__).resolve().parent.parent
ORACLE = Path(__file__).resolve().parent / "rasa_oracle.py"

WRAP_CONFIG = """\
recipe: default.v1
assistant_id: compat
language: en
pipeline:
  - name: WhitespaceTokenizer
  - name: CountVectorsFeaturizer
  - name: DIETClassifier
    epochs: 1
policies:
  - name: MemoizationPolicy
  - name: RulePolicy
"""
BASE_DOMAIN = """\
version: "3.1"
intents: [greet, goodbye]
responses:
  utter_greet: [{text: "Hi!"}]
  utter_goodbye: [{text: "Bye!"}]
"""
BASE_NLU = """\
version: "3.1"
nlu:
- intent: greet
  examples: |
    - hi
    - hello there
- intent: goodbye
  examples: |
    - bye
    - see you later
"""
BASE_STORIES = """\
version: "3.1"
stories:
- story: greet
  steps:
  - intent: greet
  - action: utter_greet
rules:
- rule: goodbye
  steps:
  - intent: goodbye
  - action: utter_goodbye
"""
_DEFAULT_ACTIONS = {
    "action_listen", "action_restart", "action_session_start", "action_default_fallback",
    "action_deactivate_loop", "action_revert_fallback_events", "action_default_ask_affirmation",
    "action_default_ask_rephrase", "action_two_stage_fallback", "action_unlikely_intent", "action_back",
    "action_extract_slots", "...",
}
_DEFAULT_INTENTS = {"restart", "back", "session_start", "nlu_fallback", "out_of_scope"}


@dataclass
class Project:
    """One project to judge: where its parts are, and what it was made from."""

    name: str
    root: Path
    kind: str  # project | domain | stories | nlu | config
    source: str
    domain: Path = field(init=False)
    config: Path = field(init=False)
    data: Path = field(init=False)

    def __post_init__(self) -> None:
        domain = self.root / "domain.yml"
        self.domain = domain if domain.exists() else self.root / "domain"
        self.config = self.root / "config.yml"
        self.data = self.root / "data"


# ------------------------------------------------------------------ wrapping


def _load_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError):
        return None


def classify(path: Path) -> str:
    """What a fixture file holds: domain, stories, nlu or config."""
    content = _load_yaml(path)
    keys = set(content) if isinstance(content, dict) else set()
    if "config" in path.parent.name or keys & {"pipeline", "policies", "recipe"}:
        return "config"
    if keys & {"stories", "rules"} or "stories" in path.parent.name:
        return "stories"
    if keys & {"nlu"} or "nlu" in path.parent.name:
        return "nlu"
    return "domain"


def _entity_names(entities: Any) -> Iterable[str]:
    for entity in entities if isinstance(entities, list) else []:
        if isinstance(entity, str):
            yield entity
        elif isinstance(entity, dict):
            if "entity" in entity:
                yield str(entity["entity"])
            else:
                yield from (str(k) for k in entity if k not in ("role", "group", "value"))


def _walk_steps(content: Any) -> Iterable[dict[str, Any]]:
    for section in ("stories", "rules"):
        for item in (content or {}).get(section) or [] if isinstance(content, dict) else []:
            if not isinstance(item, dict):
                continue
            for step in [*(item.get("condition") or []), *(item.get("steps") or [])]:
                if isinstance(step, dict) and "or" in step:
                    yield from (s for s in step["or"] or [] if isinstance(s, dict))
                elif isinstance(step, dict):
                    yield step


def _slot_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "float"
    if isinstance(value, list):
        return "list"
    return "text"


def derive_domain(content: Any) -> str:
    """A domain declaring every name a stories/rules file uses."""
    intents: set[str] = set()
    entities: set[str] = set()
    actions: set[str] = set()
    forms: set[str] = set()
    slots: dict[str, str] = {}
    for step in _walk_steps(content):
        intent = step.get("intent")
        if isinstance(intent, str) and intent.strip().lstrip("/"):
            intents.add(intent.strip().lstrip("/").split("/", 1)[0])  # Rasa drops a leading "/"
        entities.update(_entity_names(step.get("entities")))
        action = step.get("action")
        if isinstance(action, str) and action and action not in _DEFAULT_ACTIONS:
            actions.add(action)
        loop = step.get("active_loop")
        if isinstance(loop, str) and loop not in _DEFAULT_ACTIONS:
            forms.add(loop)
        for entry in step.get("slot_was_set") or [] if isinstance(step.get("slot_was_set"), list) else []:
            if isinstance(entry, str):
                slots.setdefault(entry, "text")
            elif isinstance(entry, dict):
                for name, value in entry.items():
                    if name != "requested_slot":
                        slots.setdefault(str(name), _slot_type(value))
    domain: dict[str, Any] = {"version": "3.1", "intents": sorted(intents - _DEFAULT_INTENTS) or ["greet"]}
    if entities:
        domain["entities"] = sorted(entities)
    if slots:
        domain["slots"] = {name: {"type": kind, "mappings": [{"type": "custom"}]} for name, kind in sorted(slots.items())}
    responses = {a: [{"text": a}] for a in sorted(actions) if a.startswith("utter_")}
    if responses:
        domain["responses"] = responses
    custom = sorted(a for a in actions - forms if not a.startswith("utter_"))
    if custom:
        domain["actions"] = custom
    if forms:
        domain["forms"] = {name: {"required_slots": []} for name in sorted(forms)}
    return yaml.safe_dump(domain, sort_keys=False, allow_unicode=True)


def nlu_for(intents: Iterable[str]) -> str:
    """Two distinct examples per intent."""
    blocks = [
        f"- intent: {json.dumps(intent)}\n  examples: |\n    - {intent.replace('_', ' ')} please\n"
        f"    - say {intent.replace('_', ' ')}\n"
        for intent in sorted(set(intents))
    ]
    return 'version: "3.1"\nnlu:\n' + "".join(blocks)


def _domain_intents(content: Any) -> list[str]:
    intents = content.get("intents") if isinstance(content, dict) else None
    names = []
    for intent in intents if isinstance(intents, list) else []:
        if isinstance(intent, str):
            names.append(intent.split("/", 1)[0])
        elif isinstance(intent, dict) and intent:
            names.append(str(next(iter(intent))).split("/", 1)[0])
    return [n for n in names if n not in _DEFAULT_INTENTS] or ["greet"]


def wrap_fixture(path: Path, work: Path, name: str) -> Project:
    """A minimal project around one fixture file (written under ``work``)."""
    kind = classify(path)
    root = work / name
    shutil.rmtree(root, ignore_errors=True)
    (root / "data").mkdir(parents=True)
    text = path.read_text(encoding="utf-8", errors="replace")
    content = _load_yaml(path)
    files: dict[str, str] = {"config.yml": WRAP_CONFIG}
    if kind == "domain":
        files["domain.yml"] = text
        files["data/nlu.yml"] = nlu_for(_domain_intents(content))
    elif kind == "stories":
        files["domain.yml"] = derive_domain(content)
        files["data/stories.yml"] = text
        files["data/nlu.yml"] = nlu_for(_domain_intents(yaml.safe_load(files["domain.yml"])))
    elif kind == "nlu":
        nlu = content.get("nlu") if isinstance(content, dict) else None
        intents = [str(i["intent"]) for i in nlu or [] if isinstance(i, dict) and "intent" in i]
        found = set(re.findall(r"\]\((\w+)\)", text)) | set(re.findall(r'"entity":\s*"(\w+)"', text))
        domain = {"version": "3.1", "intents": sorted({i.split("/", 1)[0] for i in intents}) or ["greet"]}
        if found:
            domain["entities"] = sorted(found)
        files["domain.yml"] = yaml.safe_dump(domain, sort_keys=False)
        files["data/nlu.yml"] = text
    else:
        files["config.yml"] = text
        files["domain.yml"] = BASE_DOMAIN
        files["data/nlu.yml"] = BASE_NLU
        files["data/stories.yml"] = BASE_STORIES
    for relative, content_text in files.items():
        (root / relative).write_text(content_text, encoding="utf-8")
    return Project(name, root, kind, str(path))


def find_projects(folder: Path) -> list[Project]:
    """Sub-folders that look like Rasa projects (config.yml, a domain, data/)."""
    found = []
    for child in sorted(p for p in folder.iterdir() if p.is_dir()):
        has_domain = (child / "domain.yml").exists() or (child / "domain").is_dir()
        if (child / "config.yml").exists() and has_domain and (child / "data").is_dir():
            found.append(Project(child.name, child, "project", str(child)))
    return found


def rule_case_projects(work: Path) -> list[Project]:
    """The regression table of tests/test_rule_check.py (and its option cases), one project per case."""
    sys.path.insert(0, str(ROOT))
    import tests.test_rule_check as cases

    items = [(param.id, param.values[0], param.values[1], cases.CONFIG) for param in cases.CASES]
    for label, extra in (("defaults", ""), ("no-restrict", "  restrict_rules: false\n"),
                         ("no-contradictions", "  check_for_contradictions: false\n")):
        items.append((f"options-{label}", cases.TWO_RULES, "", cases.CONFIG + extra))
    projects = []
    for case_id, rules, stories, config in items:
        root = work / f"rule-case-{case_id}"
        shutil.rmtree(root, ignore_errors=True)
        (root / "data").mkdir(parents=True)
        (root / "domain.yml").write_text(cases.DOMAIN)
        (root / "config.yml").write_text("recipe: default.v1\nassistant_id: compat\n" + config)
        (root / "data" / "rules.yml").write_text('version: "3.1"\n' + textwrap.dedent(rules).lstrip())
        if stories:
            (root / "data" / "stories.yml").write_text('version: "3.1"\n' + textwrap.dedent(stories).lstrip())
        projects.append(Project(root.name, root, "rule case", f"tests/test_rule_check.py::{case_id}"))
    return projects


def find_fixtures(folder: Path, work: Path) -> list[Project]:
    projects = []
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix in (".yml", ".yaml"):
            name = "fixture-" + "-".join(path.relative_to(folder).with_suffix("").parts)
            projects.append(wrap_fixture(path, work, name))
    return projects


# ------------------------------------------------------------------ verdicts


def rasa_verdicts(projects: Sequence[Project], rasa_python: Path, work: Path) -> dict[str, Any]:
    """Rasa's verdict on every project, from one run of bench/rasa_oracle.py."""
    listing = work / "oracle-projects.json"
    listing.write_text(json.dumps([
        {"name": p.name, "domain": str(p.domain), "config": str(p.config), "data": [str(p.data)]} for p in projects
    ]))
    done = subprocess.run([str(rasa_python), str(ORACLE), str(listing)], capture_output=True, text=True, cwd=work)
    if done.returncode != 0:
        raise SystemExit(f"the Rasa oracle failed ({done.returncode}):\n{done.stderr[-3000:]}")
    verdicts: dict[str, Any] = json.loads(done.stdout)
    return verdicts


def deltatrain_verdict(project: Project) -> dict[str, Any]:
    """deltatrain's ``data validate`` on the project: exit code, errors and warnings."""
    command = [sys.executable, "-m", "pipeline", "data", "validate", "--data", "data",
               "--domain", project.domain.name, "--config", "config.yml"]
    done = subprocess.run(command, cwd=project.root, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=600)
    lines = (done.stdout + done.stderr).splitlines()
    errors = [line.strip() for line in lines if ": error:" in line or line.startswith("error:")]
    if done.returncode != 0 and not errors:
        errors = [line.strip() for line in lines if line.strip()][-3:]
    return {"code": done.returncode, "errors": errors,
            "warnings": [line.strip() for line in lines if ": warning:" in line]}


def rasa_accepts(verdict: dict[str, Any]) -> bool:
    rules = verdict.get("rules")
    return verdict["validate"]["code"] == 0 and (rules is None or rules["status"] == "ok")


def _clean(message: str, root: Path) -> str:
    """One line, project paths made relative, Rasa's boilerplate around schema errors dropped."""
    text = " ".join(message.split()).replace(f"{root}/", "")
    text = re.sub(r"^.*?Here are the errors found during validation: ", "", text)
    return text.replace("You can find more information about the usage of rules at https://rasa.com/docs/rasa/rules.", "").strip()


def rasa_messages(verdict: dict[str, Any], root: Path) -> list[str]:
    """Rasa's error messages for a rejected project, each once."""
    messages = list(verdict["validate"]["errors"])
    rules = verdict.get("rules")
    if rules and rules["status"] == "invalid":
        messages.append("RulePolicy: " + rules["message"])
    elif rules and rules["status"] == "error" and not messages:
        messages.append(rules["message"])
    if verdict["validate"]["code"] != 0 and not messages:
        # Rasa printed only "completed with errors": the reasons are among its warnings
        messages = [w for w in verdict["validate"]["warnings"] if "UserWarning" in w][:4]
        messages = messages or verdict["validate"]["output"][-3:]
    cleaned = [_clean(m, root) for m in messages]
    unique = [m for i, m in enumerate(cleaned) if m and not any(m in other for other in cleaned[:i] + cleaned[i + 1:] if other != m)]
    return list(dict.fromkeys(unique))


# ------------------------------------------------------------------- report


def _short(lines: Sequence[str], limit: int = 400) -> str:
    text = " / ".join(" ".join(line.split()) for line in lines)
    text = text.replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render_markdown(rows: Sequence[dict[str, Any]], command: str) -> str:
    """The agreement table: counts, the projects both accept, then every rejection with both messages."""
    groups: dict[str, list[dict[str, Any]]] = {
        "accepted by both": [], "rejected by both": [], "Rasa rejects, deltatrain accepts": [],
        "deltatrain rejects, Rasa accepts": [],
    }
    for row in rows:
        groups[row["agreement"]].append(row)
    kinds = sorted({row["kind"] for row in rows})
    out = [
        f"Machine: {platform.machine()}, {platform.system()} {platform.release()}, Python {platform.python_version()} "
        f"(deltatrain); Rasa 3.6.21 in its own venv (Python 3.10); date {datetime.date.today().isoformat()}.",
        "",
        f"Command: `{command}`",
        "",
        "| agreement | " + " | ".join(kinds) + " | total |",
        "|---|" + "---|" * (len(kinds) + 1),
        *(
            f"| {name} | " + " | ".join(str(sum(r["kind"] == k for r in items)) for k in kinds) + f" | {len(items)} |"
            for name, items in groups.items()
        ),
        "| **total** | " + " | ".join(str(sum(r["kind"] == k for r in rows)) for k in kinds) + f" | {len(rows)} |",
        "",
        f"Rule conflicts (contradictions, incomplete and too-long rules) named identically by both: "
        f"{sum(r['rule_findings'] == 'same' for r in rows)} projects; by deltatrain with more (Rasa stops at its "
        f"first failing check): {sum(r['rule_findings'] == 'same, and more' for r in rows)}; differently: "
        f"{sum(r['rule_findings'] == 'different' for r in rows)}.",
        "",
        f"Disagreements: {sum(not r['agreement'].endswith('both') for r in rows)}, of which deliberate "
        f"(documented differences): {sum(bool(r.get('deliberate')) for r in rows)}; unexplained: "
        f"{sum(not r['agreement'].endswith('both') and not r.get('deliberate') for r in rows)}.",
        "",
        "Accepted by both: " + ", ".join(r["name"] for r in groups["accepted by both"]) + ".",
        "",
        "| project | kind | agreement | rule conflicts | Rasa's message | deltatrain's message | deliberate difference |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in (r for r in rows if r["agreement"] != "accepted by both"):
        out.append(
            f"| {row['name']} | {row['kind']} | {row['agreement']} | {row['rule_findings']} | "
            f"{_short(row['rasa_messages']) if not row['rasa_ok'] else ''} | "
            f"{_short(row['deltatrain_messages']) if not row['deltatrain_ok'] else ''} | {row.get('deliberate', '')} |"
        )
    return "\n".join(out) + "\n"


_RASA_CONFLICT = re.compile(
    r"the prediction of the action '([^']*)' in (rule|story) '([^']*)' is contradicting with rule\(s\) '([^']*)'"
)
_OUR_CONFLICT = re.compile(
    r"the prediction of the action '([^']*)' in (rule|story) '([^']*)'(?: \([^)]*\))? is contradicting with "
    r"rule\(s\) (.*?)(?: which predicted|$)"
)
_RASA_TOO_LONG = re.compile(r"Found rules '([^']*)' that contain more than")


def rule_findings(messages: Sequence[str], ours: bool) -> set[tuple[str, ...]]:
    """The rule conflicts named in messages: (action, rule|story, name, rules...), incomplete and too-long rules."""
    found: set[tuple[str, ...]] = set()
    text = "\n".join(messages)
    if ours:
        for line in messages:
            for action, kind, name, culprits in _OUR_CONFLICT.findall(line):
                found.add((action, kind, name, *sorted(re.findall(r"'([^']*)'", culprits))))
            too_long = re.search(r"rule '([^']*)'(?: \([^)]*\))? contains \d+ user messages", line)
            if too_long:
                found.add(("too long", too_long.group(1)))
    else:
        for action, kind, name, culprits in _RASA_CONFLICT.findall(text):
            found.add((action, kind, name, *sorted(culprits.split(", "))))
        for names in _RASA_TOO_LONG.findall(text):
            found.update(("too long", n) for n in names.split(", "))
    pattern = re.compile(r"the (?:action|form) '([^']*)' in rule '([^']*)' does not set")
    found.update(("incomplete", action, rule) for action, rule in pattern.findall(text))
    return found


#: Rasa messages of projects deltatrain accepts on purpose (README, "Compatibility with Rasa")
DELIBERATE: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"Cannot find required key 'mappings'"), "Rasa 2 slot without `mappings:`, read on purpose"),
    (re.compile(r"'unfeaturized' is neither a known type"), "Rasa 2 slot type `unfeaturized`, read on purpose"),
    (re.compile(r"Project validation completed with errors|there is no matching response defined"),
     "Rasa 2 `templates:`, read as `responses:` on purpose"),
)


#: deltatrain errors Rasa's ``data validate`` does not report, on purpose
DELIBERATE_OURS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"is a custom (policy|component) class"),
     "custom classes are errors at validate time (Rasa's `data validate` does not load them; `rasa train` fails "
     "without the module); `--ignore-unknown-components` trains without them"),
    (re.compile(r"deltatrain cannot run Jieba|the NLU pipeline has no featurizer"),
     "JiebaTokenizer is an error at validate time, by design (whitespace tokens of Chinese would be whole "
     "sentences; `--ignore-unknown-components` trains without it); spaCy/MITIE components are left out or "
     "replaced with a warning, so a pipeline whose only featurizers they were has none"),
    (re.compile(r"must be a mapping with 'text:', got the text"),
     "Rasa 2 `templates:` are read as responses and checked as Rasa 3 checks responses (Rasa 3.6 ignores "
     "`templates:`, so it never sees their bare-string variations)"),
)


def explain(row: dict[str, Any], project: Project) -> str:
    """Why a disagreement is deliberate (a documented difference), or "" when it is not explained."""
    if row["agreement"] == "deltatrain rejects, Rasa accepts":
        domain = project.domain.read_text(encoding="utf-8", errors="replace") if project.domain.is_file() else ""
        found = [[why for pattern, why in DELIBERATE_OURS if pattern.search(m)] for m in row["deltatrain_messages"]]
        if not found or not all(found) or any("templates" in f[0] and "templates:" not in domain for f in found):
            return ""
        return "; ".join(dict.fromkeys(f[0] for f in found))
    if row["agreement"] != "Rasa rejects, deltatrain accepts":
        return ""
    domain = project.domain.read_text(encoding="utf-8", errors="replace") if project.domain.is_file() else ""
    reasons = []
    for message in row["rasa_messages"]:
        matched = [why for pattern, why in DELIBERATE if pattern.search(message)]
        if not matched or ("templates" in matched[0] and "templates:" not in domain):
            return ""
        reasons.append(matched[0])
    return "; ".join(dict.fromkeys(reasons))


def compare(projects: Sequence[Project], rasa: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for project in projects:
        verdict = rasa[project.name]
        ours = deltatrain_verdict(project)
        rasa_ok, our_ok = rasa_accepts(verdict), ours["code"] == 0
        agreement = (
            "accepted by both" if rasa_ok and our_ok else
            "rejected by both" if not rasa_ok and not our_ok else
            "Rasa rejects, deltatrain accepts" if our_ok else "deltatrain rejects, Rasa accepts"
        )
        theirs_rules = rule_findings(rasa_messages(verdict, project.root), ours=False)
        our_rules = rule_findings(ours["errors"], ours=True)
        same_rules = (
            "" if not (theirs_rules or our_rules)
            else "same" if theirs_rules == our_rules
            # Rasa stops at its first failing check; deltatrain reports every check at once
            else "same, and more" if theirs_rules and theirs_rules < our_rules
            else "different"
        )
        rows.append({
            "name": project.name, "kind": project.kind, "source": project.source, "agreement": agreement,
            "rule_findings": same_rules,
            "rasa_ok": rasa_ok, "deltatrain_ok": our_ok, "rasa_messages": rasa_messages(verdict, project.root),
            "rasa_warnings": verdict["validate"]["warnings"][:20], "deltatrain_messages": ours["errors"],
            "deltatrain_warnings": ours["warnings"][:20],
        })
        rows[-1]["deliberate"] = explain(rows[-1], project)
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rasa-venv", type=Path, required=True, help="virtual env with rasa==3.6.21 installed")
    parser.add_argument("--projects", type=Path, action="append", default=[], help="folder of Rasa projects")
    parser.add_argument("--fixtures", type=Path, action="append", default=[], help="folder of single YAML files")
    parser.add_argument("--rule-cases", action="store_true", help="also judge tests/test_rule_check.py's cases")
    parser.add_argument("--work", type=Path, help="where wrapped fixtures are written (default: a temp folder)")
    parser.add_argument("--markdown", type=Path, help="write the table here (default: stdout)")
    parser.add_argument("--json", type=Path, help="write every verdict here")
    parser.add_argument("--oracle-json", type=Path,
                        help="Rasa's raw verdicts: read from here when the file exists (Rasa is not run), else written here")
    args = parser.parse_args(argv)
    rasa_python = args.rasa_venv / "bin" / "python"
    if not rasa_python.exists():
        parser.error(f"--rasa-venv: no Python at {rasa_python}; create it with: python3.10 -m venv {args.rasa_venv} "
                     f"&& {args.rasa_venv}/bin/pip install rasa==3.6.21")
    work = args.work or Path(tempfile.mkdtemp(prefix="rasa-compat-"))
    work.mkdir(parents=True, exist_ok=True)
    projects = [p for folder in args.projects for p in find_projects(folder)]
    projects += [p for folder in args.fixtures for p in find_fixtures(folder, work / "wrapped")]
    if args.rule_cases:
        projects += rule_case_projects(work / "rule-cases")
    if not projects:
        parser.error("no projects found: give --projects and/or --fixtures folders")
    print(f"judging {len(projects)} projects with Rasa ...", file=sys.stderr)
    if args.oracle_json is not None and args.oracle_json.exists():
        rasa = json.loads(args.oracle_json.read_text())
        missing = [p.name for p in projects if p.name not in rasa]
        if missing:
            parser.error(f"--oracle-json {args.oracle_json} has no verdict for {', '.join(missing[:5])}; delete it to rerun Rasa")
    else:
        rasa = rasa_verdicts(projects, rasa_python, work)
        if args.oracle_json is not None:
            args.oracle_json.write_text(json.dumps(rasa, indent=1))
    print("... and with deltatrain", file=sys.stderr)
    rows = compare(projects, rasa)
    command = "python bench/rasa_compat.py " + " ".join(argv if argv is not None else sys.argv[1:])
    table = render_markdown(rows, command)
    if args.markdown:
        args.markdown.write_text(table)
    else:
        print(table)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    print(textwrap.dedent(f"""\
        {sum(r['agreement'] == 'accepted by both' for r in rows)} accepted by both, \
        {sum(r['agreement'] == 'rejected by both' for r in rows)} rejected by both, \
        {sum(not r['agreement'].endswith('both') for r in rows)} disagreements"""), file=sys.stderr)


if __name__ == "__main__":
    main()
