"""Hostile data and secrets: nothing deltatrain prints runs as a CI command or shows a credential.

Unit tests hold the rules of :mod:`pipeline.safe_output`; end-to-end tests run
the real CLI and the Action's entry point on a project whose intent names,
texts and file names carry injection payloads and secrets, and read every
channel: stdout, stderr, ``$GITHUB_OUTPUT``, ``$GITHUB_STEP_SUMMARY``, the
report JSON and the PR comment.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from pipeline import safe_output as so
from pipeline.report import OUTPUT_NAMES
from tests.fake_github import PR, REPO, TOKEN, FakeGitHub
from tests.helpers import write_project

ROOT = Path(__file__).resolve().parent.parent

# ------------------------------------------------------------------ what a runner would do with a line


def runner_lines(text: str) -> list[str]:
    """Lines as the GitHub runner reads them (``\\r``, ``\\n``, ``\\r\\n``), and as Python splits them."""
    lines = re.split(r"\r\n|\r|\n", text)
    return list(dict.fromkeys(lines + [part for line in lines for part in line.splitlines()]))


def command_name(line: str) -> str | None:
    """The workflow command GitHub would run for ``line`` (v2 ``::name`` at the start, v1 ``##[name`` anywhere)."""
    stripped = line.lstrip()
    if stripped.startswith("::"):
        match = re.match(r"::([^\s:]*)", stripped)
        return match.group(1) if match else ""
    if "##[" in line:
        return "v1:" + line.split("##[", 1)[1].split("]")[0]
    return None


#: Secret values the tests hand to deltatrain (the only values it may print in ``::add-mask::``).
STORE_PASSWORD = "pw-S3cr3t-9f2"
STORE_TOKEN = "store-tok-77aa91"
SECRETS = (STORE_PASSWORD, STORE_TOKEN, TOKEN, "tok-5531", "sig-9a8b7c")

#: Lines deltatrain emits on purpose: annotations titled deltatrain, masks of the secrets, its stop-commands pair.
DELIBERATE = re.compile(
    r"::(error|warning|notice) (?:[a-z]+=[^,:\n]*,)*title=deltatrain[^:,]*::(?!PWNED).*"
    rf"|::add-mask::(?:{'|'.join(map(re.escape, SECRETS))})"
    r"|::stop-commands::deltatrain-[0-9a-f]{32}"
    r"|::deltatrain-[0-9a-f]{32}::"
)


def assert_inert_log(text: str) -> list[str]:
    """Fail on any line a runner would run that deltatrain did not mean; return the deliberate ones."""
    for bad in ("\x1b", "\r", "\x85", "\u2028", "\u2029", "\x9b"):
        assert bad not in text, f"raw {bad!r} in the log"
    deliberate = []
    for line in runner_lines(text):
        name = command_name(line)
        if name is None:
            continue
        assert DELIBERATE.fullmatch(line), f"line would run as workflow command {name!r}: {line!r}"
        deliberate.append(line)
    tokens = [line.split("::")[2] for line in deliberate if line.startswith("::stop-commands::")]
    for token in tokens:
        assert f"::{token}::" in deliberate, f"stop-commands {token} never resumed"
    return deliberate


def parse_github_output(text: str) -> dict[str, str]:
    """``$GITHUB_OUTPUT`` parsed as the runner does (``k=v`` and ``k<<DELIM`` heredocs)."""
    lines = re.split(r"\r\n|\r|\n", text)
    outputs: dict[str, str] = {}
    index = 0
    while index < len(lines):
        line = lines[index]
        index += 1
        if not line:
            continue
        equals, heredoc = line.find("="), line.find("<<")
        if equals >= 0 and (heredoc < 0 or equals < heredoc):
            key, value = line[:equals], line[equals + 1:]
        else:
            assert heredoc > 0, f"invalid output line {line!r}"
            key, delimiter = line[:heredoc], line[heredoc + 2:]
            end = lines.index(delimiter, index)
            value = "\n".join(lines[index:end])
            index = end + 1
        assert key not in outputs, f"output {key!r} written twice"
        outputs[key] = value
    return outputs


# ------------------------------------------------------------------ unit: log text

PAYLOADS = {
    "newline-then-commands": "smalltalk\n::warning title=x::PWNED\n::error::PWNED",
    "add-mask": "greet\n::add-mask::PWNED",
    "set-output": "x\n::set-output name=decision::PWNED",
    "indented-command": "y\n \t ::error::PWNED",
    "unicode-space-before-command": "y\n\u00a0\u3000::error::PWNED",
    "old-syntax-anywhere": "z ##[error]PWNED",
    "stop-commands": "w\n::stop-commands::PWNED",
    "percent-encoded-newline": "p%0A::error::PWNED%0D%0A::add-mask::PWNED",
    "carriage-return": "r\r::error::PWNED",
    "gitlab-section": "s\x1b[0Ksection_start:1700000000:PWNED\r\x1b[0Kfake section",
    "ansi-erase-line": "a\x1b[2K\x1b[1A::error::PWNED",
    "c1-csi": "c\x9b31mPWNED",
    "line-separator": "u\u2028::error::PWNED",
    "next-line": "n\x85::error::PWNED",
    "vertical-tab-form-feed": "v\x0b::error::PWNED\x0c::error::PWNED",
    "forged-title": "t\n::warning file=domain.yml,line=1,title=deltatrain::PWNED",
    "html": "<img src=x onerror=alert(1)>PWNED</details><!--",
    "html-after-escaped-backtick": "b\\`<img src=x onerror=alert(2)>\\` | PWNED | x",
}


@pytest.mark.parametrize("payload", [pytest.param(v, id=k) for k, v in PAYLOADS.items()])
def test_log_text_from_data_never_runs_and_keeps_its_content_visible(payload: str) -> None:
    text = so.render_log_text(f"intent '{payload}' added")
    assert assert_inert_log(text) == []
    assert "PWNED" in text
    assert not re.search(r"section_(start|end):\d+:\S*\r\x1b\[0K", text)


def test_clean_text_passes_unchanged() -> None:
    text = "data/nlu.yml:3: warning: intent 'greet' has 1 example\n    fix: add examples: a, b (100%)"
    assert so.render_log_text(text) == text


# ------------------------------------------------------------------ unit: commands


def test_annotation_message_and_properties_are_escaped_as_github_documents() -> None:
    line = so.render_command(
        so.CommandName.ERROR,
        "bad\r\nthing 100%\n::error::PWNED ##[x]",
        {"file": "data/a,b:c.yml", "line": 3, "title": "deltatrain"},
    )
    assert line == (
        "::error file=data/a%2Cb%3Ac.yml,line=3,title=deltatrain::bad%0Athing 100%25%0A::error::PWNED %2523%2523[x]"
    )
    assert runner_lines(line) == [line]


def test_add_mask_is_escaped_but_not_redacted() -> None:
    assert so.render_mask_commands("one\ntwo 100%\n") == ["::add-mask::one", "::add-mask::two 100%25"]
    assert so.render_command(so.CommandName.ADD_MASK, "s3cr3t-value", secrets=["s3cr3t-value"]) == (
        "::add-mask::s3cr3t-value"
    )


def test_unknown_command_names_and_bad_property_names_are_refused() -> None:
    with pytest.raises(ValueError):
        so.render_command("set-output", "x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="property names"):
        so.render_command(so.CommandName.ERROR, "x", {"na=me": "y"})


# ------------------------------------------------------------------ unit: outputs and JSON


def test_outputs_cannot_gain_keys_or_end_their_heredoc_early() -> None:
    hostile = "full\nmodel-url=https://evil.example\nx<<EOF\n::error::PWNED\r\ndecision=hacked"
    text = so.render_outputs({"decision": "full", "reason": hostile, "model-url": ""})
    outputs = parse_github_output(text)
    assert list(outputs) == ["decision", "reason", "model-url"]
    assert outputs["decision"] == "full" and outputs["model-url"] == ""
    assert "\n" not in outputs["reason"] and "PWNED" in outputs["reason"]
    assert not outputs["reason"].lstrip().startswith("::")


def test_a_value_holding_the_delimiter_is_refused() -> None:
    with pytest.raises(ValueError, match="delimiter"):
        so.render_outputs({"reason": "a EOF_x b"}, delimiter="EOF_x")
    with pytest.raises(ValueError, match="output names"):
        so.render_outputs({"bad\nname": "x"})


def test_render_json_means_the_same_and_is_inert() -> None:
    value = {"reason": PAYLOADS["old-syntax-anywhere"], "names": list(PAYLOADS.values()), "n": 1.5, "none": None}
    text = so.render_json(value)
    assert json.loads(text) == value
    assert "##[" not in text
    assert_inert_log(text)


# ------------------------------------------------------------------ unit: redaction


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("store http://user:pw@host/x", "store http://***@host/x", id="basic-auth"),
        pytest.param("https://tok3n@host:8443/a", "https://***@host:8443/a", id="token-as-user"),
        pytest.param("http://u:p@ss@host/", "http://***@host/", id="at-in-password"),
        pytest.param("GET https://h/m.json?token=abc123&x=1", "GET https://h/m.json?token=***&x=1", id="token-param"),
        pytest.param("https://h/?access_token=a.b-c", "https://h/?access_token=***", id="access-token"),
        pytest.param(
            "https://b.s3.amazonaws.com/k?X-Amz-Credential=AKIA%2F1&X-Amz-Signature=deadbeef&X-Amz-Expires=60",
            "https://b.s3.amazonaws.com/k?X-Amz-Credential=***&X-Amz-Signature=***&X-Amz-Expires=60",
            id="presigned-s3",
        ),
        pytest.param("https://h/f?sig=abc&se=2026", "https://h/f?sig=***&se=2026", id="azure-sas"),
        pytest.param("https://h/f?private_token=glpat-x", "https://h/f?private_token=***", id="gitlab-token"),
        pytest.param("s3://bucket/prefix and file:///tmp/store", "s3://bucket/prefix and file:///tmp/store", id="no-secret"),
        pytest.param("https://h/a?design=1&key=models/a", "https://h/a?design=1&key=models/a", id="innocent-params"),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert so.redact(text) == expected


def test_redact_finds_credentials_in_markdown_rendered_urls() -> None:
    """The summary is rendered to Markdown first and redacted where it is written."""
    for render in (so.render_markdown_text, so.render_markdown_code):
        text = so.redact(render(f"see {LEAKY_URL}&access_token=t0k", in_table=True))
        assert not any(secret in text for secret in (STORE_PASSWORD, "tok-5531", "sig-9a8b7c", "t0k"))


def test_redact_known_secret_values_and_find_the_secrets_of_a_url() -> None:
    assert so.redact("token is ghs_abcdef, again ghs_abcdef", ["ghs_abcdef", "ab"]) == "token is ***, again ***"
    assert so.find_url_secrets("http://bob:p%40ss-w0rd@h/x?token=t0k3n") == ["p%40ss-w0rd", "p@ss-w0rd", "t0k3n"]
    assert so.find_url_secrets("https://h/x") == []
    secrets = so.find_secrets({"DELTATRAIN_STORE_TOKEN": "store-tok", "GITHUB_TOKEN": ""}, ["http://a:pw-123@h/"])
    assert secrets == ("store-tok", "pw-123")


# ------------------------------------------------------------------ unit: Markdown


def test_markdown_renders_data_on_one_line_without_html() -> None:
    code = so.render_markdown_code("a`b``c|d\n<e>", in_table=True)
    assert code == "```a`b``c\\|d\\n<e>```"
    assert so.render_markdown_code("`x`") == "`` `x` ``"
    assert so.render_markdown_text("<img src=x>\n| & ::error::", in_table=True) == (
        "&lt;img src=x&gt;\\n\\| &amp; ::error::"
    )


# ------------------------------------------------------------------ end to end

#: Intent names that try every trick; each also appears in the domain so the decision names it.
HOSTILE_INTENTS = [
    PAYLOADS["newline-then-commands"],
    PAYLOADS["add-mask"],
    PAYLOADS["set-output"],
    PAYLOADS["indented-command"],
    PAYLOADS["old-syntax-anywhere"],
    PAYLOADS["stop-commands"],
    PAYLOADS["percent-encoded-newline"],
    PAYLOADS["gitlab-section"],
    PAYLOADS["ansi-erase-line"],
    PAYLOADS["line-separator"],
    PAYLOADS["forged-title"],
    PAYLOADS["html"],
    PAYLOADS["html-after-escaped-backtick"],
]
HOSTILE_FILE = "data/extra\n::error file=x.py,line=1::PWNED\x1b[31m.yml"
LEAKY_URL = f"http://leaker:{STORE_PASSWORD}@store.example/x?token=tok-5531&X-Amz-Signature=sig-9a8b7c"

BASE_FILES = {
    "config.yml": """
        language: en
        pipeline:
          - name: WhitespaceTokenizer
          - name: CountVectorsFeaturizer
          - name: DIETClassifier
            epochs: 1
        policies:
          - name: MemoizationPolicy
    """,
    "data/nlu.yml": """
        version: "3.1"
        nlu:
        - intent: greet
          examples: |
            - hi
            - hello
        - intent: bye
          examples: |
            - bye
            - goodbye
    """,
    "data/stories.yml": """
        version: "3.1"
        stories:
        - story: hi
          steps:
          - intent: greet
          - action: utter_greet
    """,
}
BASE_DOMAIN = 'version: "3.1"\nintents:\n  - greet\n  - bye\nresponses:\n  utter_greet:\n    - text: hi\n'


def _q(text: str) -> str:
    """A YAML double-quoted scalar (JSON strings are valid YAML)."""
    return json.dumps(text)


def _make_hostile(project: Path) -> None:
    """Add the hostile intents (domain, NLU, a file with a hostile name) and a leaky URL to a project."""
    intents = HOSTILE_INTENTS + [f"leak {LEAKY_URL} {STORE_TOKEN}"]
    domain = BASE_DOMAIN.replace("  - bye\n", "  - bye\n" + "".join(f"  - {_q(i)}\n" for i in intents))
    domain += f"  utter_evil:\n    - text: {_q(PAYLOADS['add-mask'])}\n"
    (project / "domain.yml").write_text(domain, encoding="utf-8")
    blocks = "".join(
        f"- intent: {_q(name)}\n  examples: |\n    - ::error::PWNED example {n}\n    - evil {n} two\n"
        for n, name in enumerate(intents)
    )
    with open(project / "data" / "nlu.yml", "a", encoding="utf-8") as handle:
        handle.write(blocks)
    hostile_file = project / HOSTILE_FILE
    hostile_file.write_text(
        'version: "3.1"\nnlu:\n- intent: not_in_domain\n  examples: |\n    - x\n    - y\n', encoding="utf-8"
    )


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """A clean project with one real (tiny) model in a local store; yields (project template, store)."""
    root = tmp_path_factory.mktemp("seeded")
    project = write_project(root / "project", BASE_FILES)
    (project / "domain.yml").write_text(BASE_DOMAIN, encoding="utf-8")
    store = root / "store"
    result = _run_cli(project, store, "--epochs", "1", env={})
    assert result.returncode == 0, result.stderr
    yield project, store


def _env(**extra: str) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("INPUT_", "GITHUB_", "DELTATRAIN_", "CI"))}
    return {**keep, "PYTHONPATH": str(ROOT), **extra}


def _run_cli(project: Path, store: Path, *extra: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "pipeline", "ci", "-C", str(project), "--no-git", "--store", str(store), *extra]
    return _run(argv, env=_env(**env), cwd=project)


def _run(argv: list[str], *, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run and capture output as bytes, decoded as-is: text mode would turn every CR into a newline."""
    result = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, timeout=300)
    return subprocess.CompletedProcess(
        result.args, result.returncode, result.stdout.decode("utf-8"), result.stderr.decode("utf-8")
    )


def _hostile_copy(seeded: tuple[Path, Path], tmp_path: Path) -> Path:
    import shutil

    project = tmp_path / "project"
    shutil.copytree(seeded[0], project, ignore=shutil.ignore_patterns("models", ".deltatrain"))
    _make_hostile(project)
    return project


def _assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, f"secret {secret!r} leaked"


def _assert_markdown_safe(markdown: str) -> None:
    """Rendered as GitHub would (CommonMark, tables, raw HTML allowed): data adds no HTML and no cells."""
    from markdown_it import MarkdownIt

    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]", markdown)
    parser = MarkdownIt("commonmark", {"html": True}).enable("table")
    html = parser.render(markdown)
    assert "<img" not in html
    assert html.count("<!--") == html.count("<!-- deltatrain-report -->") <= 1  # only the PR comment's marker
    assert html.count("<details>") == html.count("</details>") <= 1
    cells: list[int] = []
    for token in parser.parse(markdown):
        if token.type == "tr_open":
            cells.append(0)
        elif token.type in ("th_open", "td_open"):
            cells[-1] += 1
        elif token.type == "table_close":
            assert len(set(cells)) == 1, f"a data value changed a table's shape: {cells}"
            cells = []
    for line in markdown.split("\n"):
        if "PWNED" in line:  # data stays inside a list item, a quote or a table row
            assert line.startswith(("- ", "| ", "> ")), line


def test_cli_on_hostile_data_prints_nothing_that_runs_and_no_secret(
    seeded: tuple[Path, Path], tmp_path: Path, fake_github: FakeGitHub
) -> None:
    project = _hostile_copy(seeded, tmp_path)
    output, summary, report = tmp_path / "output", tmp_path / "summary.md", tmp_path / "report.json"
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"pull_request": {"number": PR}}))
    env = {
        "GITHUB_ACTIONS": "true", "GITHUB_OUTPUT": str(output), "GITHUB_STEP_SUMMARY": str(summary),
        "GITHUB_EVENT_PATH": str(event), "GITHUB_REPOSITORY": REPO, "GITHUB_API_URL": fake_github.base_url,
        "GITHUB_TOKEN": TOKEN, "DELTATRAIN_STORE_TOKEN": STORE_TOKEN,
    }

    result = _run_cli(project, seeded[1], "--mode", "skip-check", "--report-json", str(report), "--pr-comment", env=env)

    assert result.returncode == 0, result.stderr
    assert "PWNED" in result.stderr and "PWNED" in result.stdout  # the payloads did reach the output
    deliberate = assert_inert_log(result.stdout) + assert_inert_log(result.stderr)
    assert any(line.startswith("::warning file=") for line in deliberate)  # annotations still work
    assert sum(line.startswith("::stop-commands::") for line in deliberate) == 1
    outputs = parse_github_output(output.read_text(encoding="utf-8"))
    assert list(outputs) == list(OUTPUT_NAMES)
    assert "PWNED" in outputs["reason"] and "***" in outputs["reason"]
    assert all("\n" not in v and not v.lstrip().startswith("::") and "##[" not in v for v in outputs.values())
    markdown = summary.read_text(encoding="utf-8")
    _assert_markdown_safe(markdown)
    comment = fake_github.marked(PR)[0]["body"]
    _assert_markdown_safe(comment)
    data = json.loads(report.read_text(encoding="utf-8"))
    assert any("PWNED" in reason for reason in data["reasons"])
    assert "##[" not in report.read_text(encoding="utf-8")
    _assert_no_secret(result.stdout, result.stderr, output.read_text(), markdown, comment, report.read_text())
    assert "http://***@store.example/x?token=***&amp;X-Amz-Signature=***" in markdown


@pytest.mark.parametrize("ci", ["github", "gitlab"])
def test_data_validate_on_hostile_data(seeded: tuple[Path, Path], tmp_path: Path, ci: str) -> None:
    project = _hostile_copy(seeded, tmp_path)
    (project / "data" / "broken.yml").write_text(
        f'version: "3.1"\nnlu:\n- intent: {_q(PAYLOADS["newline-then-commands"])}\n  examples: 42\n', encoding="utf-8"
    )
    ci_env = {"GITHUB_ACTIONS": "true"} if ci == "github" else {"CI": "true", "GITLAB_CI": "true"}
    result = _run(
        [sys.executable, "-m", "pipeline", "data", "validate"], cwd=project,
        env=_env(**ci_env, DELTATRAIN_STORE_TOKEN=STORE_TOKEN),
    )
    assert result.returncode == 1, result.stderr
    assert "PWNED" in result.stderr
    annotations = assert_inert_log(result.stdout) + assert_inert_log(result.stderr)
    if ci == "github":
        assert any(line.startswith("::error file=data/broken.yml,line=") for line in annotations)
    else:
        assert annotations == []  # GitLab gets no GitHub commands, and no section marker or ESC either
    _assert_no_secret(result.stdout, result.stderr)


def _run_action(project: Path, tmp_path: Path, **inputs: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Path]]:
    files = {"output": tmp_path / "action-output", "summary": tmp_path / "action-summary.md"}
    env = _env(
        GITHUB_ACTIONS="true", GITHUB_OUTPUT=str(files["output"]), GITHUB_STEP_SUMMARY=str(files["summary"]),
        **{f"INPUT_{name.upper()}": value for name, value in inputs.items()},
    )
    result = _run([sys.executable, str(ROOT / "entrypoint.py")], env=env, cwd=project)
    return result, files


def test_action_masks_the_store_token_first_and_prints_nothing_that_runs(
    seeded: tuple[Path, Path], tmp_path: Path
) -> None:
    project = _hostile_copy(seeded, tmp_path)
    import shutil

    store = tmp_path / "store"
    shutil.copytree(seeded[1], store)
    result, files = _run_action(
        project, tmp_path, **{
            "working-directory": str(project), "store": str(store), "mode": "skip-check", "upload": "false",
            "pr-comment": "false", "store-token": STORE_TOKEN, "report-json": str(tmp_path / "r.json"),
        }
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split("\n")
    assert lines[0] == f"::add-mask::{STORE_TOKEN}"
    assert_inert_log(result.stdout)
    assert_inert_log(result.stderr)
    outputs = parse_github_output(files["output"].read_text(encoding="utf-8"))
    assert list(outputs) == list(OUTPUT_NAMES) and "PWNED" in outputs["reason"]
    _assert_markdown_safe(files["summary"].read_text(encoding="utf-8"))
    _assert_no_secret(result.stderr, "\n".join(lines[1:]), files["output"].read_text(), files["summary"].read_text())


@pytest.mark.parametrize(
    "store_url",
    [
        pytest.param(f"http://leaker:{STORE_PASSWORD}@127.0.0.1:{{port}}/store/", id="basic-auth"),
        pytest.param(f"http://127.0.0.1:{{port}}/store/?token={STORE_PASSWORD}", id="token-query"),
    ],
)
def test_action_never_prints_store_credentials_even_when_the_store_fails(tmp_path: Path, store_url: str) -> None:
    """A store that refuses (403): the error goes to the log, an annotation and the summary, redacted."""
    from tests.stores.fake_http import FakeStoreServer

    server = FakeStoreServer().start()
    try:
        server.add_fault("*", ".*", status=403)
        project = write_project(tmp_path / "project", BASE_FILES)
        (project / "domain.yml").write_text(BASE_DOMAIN, encoding="utf-8")
        url = store_url.format(port=server.origin.rsplit(":", 1)[1])
        result, files = _run_action(
            project, tmp_path, **{"working-directory": str(project), "store": url, "mode": "skip-check",
                                  "pr-comment": "false", "github-token": TOKEN},
        )
    finally:
        server.stop()
    assert result.returncode == 4, result.stdout + result.stderr
    masks = [line for line in result.stdout.split("\n") if line.startswith("::add-mask::")]
    assert f"::add-mask::{STORE_PASSWORD}" in masks
    first_other = next(i for i, line in enumerate(result.stdout.split("\n")) if not line.startswith("::add-mask::"))
    assert all(line.startswith("::add-mask::") for line in result.stdout.split("\n")[:first_other])
    after_masks = "\n".join(result.stdout.split("\n")[first_other:])
    assert "::error title=deltatrain::" in after_masks
    assert "127.0.0.1" in result.stderr  # the URL is still named, without its secret
    _assert_no_secret(after_masks, result.stderr, files["summary"].read_text(encoding="utf-8"))
    assert_inert_log(after_masks)


def test_action_error_path_redacts_and_escapes_bad_input(tmp_path: Path) -> None:
    """A two-line store input (refused before the CLI runs) holding credentials and a command."""
    bad = f"http://leaker:{STORE_PASSWORD}@host/\n::error::PWNED"
    result, files = _run_action(tmp_path, tmp_path, store=bad)
    assert result.returncode == 2
    after_masks = "\n".join(line for line in result.stdout.split("\n") if not line.startswith("::add-mask::"))
    assert "::error title=deltatrain::" in after_masks
    assert_inert_log(after_masks)
    assert_inert_log(result.stderr)
    summary = files["summary"].read_text(encoding="utf-8")
    _assert_no_secret(after_masks, result.stderr, summary)
    assert "http://***@host/" in result.stderr


def test_console_redacts_and_neutralizes_every_channel() -> None:
    import io

    from pipeline.cli import Console
    from pipeline.errors import DataError, Location, Problem, StoreError

    out, err = io.StringIO(), io.StringIO()
    console = Console({"GITHUB_ACTIONS": "true", "DELTATRAIN_STORE_TOKEN": STORE_TOKEN}, out=out, err=err)
    console.add_secret_urls([LEAKY_URL])
    console.info(f"uploading to {LEAKY_URL}\n::error::PWNED")
    console.result(f"{STORE_TOKEN}\n##[add-mask]PWNED")
    console.json({"x": "##[error]PWNED\u2028"})
    console.error(StoreError(f"cannot read {LEAKY_URL}\n::add-mask::PWNED", location=LEAKY_URL))
    console.error(DataError([Problem("error", "bad\n::error::PWNED", Location("data/a\n::x.yml", 2, 3), "fix\r\x1b[2K")]))
    console.untrusted_block("## summary\n::error::PWNED")
    deliberate = assert_inert_log(out.getvalue()) + assert_inert_log(err.getvalue())
    assert len([line for line in deliberate if line.startswith("::error")]) == 2
    _assert_no_secret(out.getvalue(), err.getvalue())
    assert "http://***@store.example/x?token=***&X-Amz-Signature=***" in err.getvalue()
    assert "::error file=data/a\\n%3A%3Ax.yml,line=2,col=3,title=deltatrain::bad%0A::error::PWNED%0Afix: fix%0A\\x1b[2K" in (
        out.getvalue()
    )


def test_source_prints_only_through_the_boundary() -> None:
    """No module but the boundary writes to stdout/stderr with print(): new output must go through it."""
    allowed = {"pipeline/cli.py", "pipeline/action.py"}
    offenders = []
    for path in sorted((ROOT / "pipeline").rglob("*.py")):
        relative = str(path.relative_to(ROOT))
        text = path.read_text(encoding="utf-8")
        if re.search(r"^\s*print\(", text, re.M) and relative not in allowed:
            offenders.append(relative)
    assert offenders == []
