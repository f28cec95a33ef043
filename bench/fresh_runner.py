"""Fresh-runner benchmark: how long until `deltatrain ci` decides, and what a training run costs to set up.

Simulates what the composite Action (action.yml) does on a new GitHub runner,
on this machine:

* decide phase: a new, empty virtual env (``python -m venv --without-pip``);
  ``pip install`` of the core (a wheel built from this checkout, its pinned
  dependencies from PyPI, no pip cache); ``deltatrain ci --decide-only`` on a
  git repository whose store already holds the model of HEAD (``skip``) or of
  the commit before (``finetune``).
* training phase (finetune only): ``pip install --target`` of
  requirements/train.lock + requirements/models.lock, three ways: no cache
  (every wheel downloaded, then installed), a warm pip cache (the wheels are
  on disk and only installed: measured as ``pip install --no-index
  --find-links`` of the downloaded wheels, because the package proxy of this
  machine sends responses pip does not cache), and a restored install folder
  (what actions/cache restores: a zstd tar of the folder, unpacked); then
  ``deltatrain ci`` trains, tests, uploads.

pip runs with ``--isolated`` so this machine's local wheel mirrors are not
used: every package comes from PyPI, as on a runner. Run from the repository
root (about 5-10 minutes, downloads about 450 MB once)::

    python bench/fresh_runner.py --json /tmp/fresh_runner.json

Not a test: wall times depend on the network and on the load of the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "assistant"
#: Added to the example's NLU data to make the finetune scenario's change.
NEW_EXAMPLES = "\n".join(["    - hey there, good to see you", "    - hiya, how are things"]) + "\n"


#: The environment of a runner's step: this checkout is not on the path (PYTHONPATH would make pip
#: see a `deltatrain.egg-info` here as installed).
CLEAN_ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


def run(argv: list[str], **kwargs: Any) -> float:
    """Run a command (failing loudly) in :data:`CLEAN_ENV` unless told, return its wall time in seconds."""
    kwargs.setdefault("env", CLEAN_ENV)
    started = time.perf_counter()
    result = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        sys.stderr.write(result.stdout[-4000:] + result.stderr[-4000:])
        raise SystemExit(f"failed ({result.returncode}): {' '.join(map(str, argv))}")
    return time.perf_counter() - started


def size_mb(path: Path) -> float:
    """Size of a folder's files in MB (10^6 bytes)."""
    return round(sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink()) / 1e6, 1)


def site_packages(venv: Path) -> Path:
    return next((venv / "lib").glob("python3*/site-packages"))


def has_package(folder: Path, name: str) -> bool:
    return (folder / name).is_dir()


def pip(python: str, venv_python: Path | None, *args: str) -> list[str]:
    """A pip command of the runner's Python, installing into ``venv_python``'s environment when given."""
    target = ["--python", str(venv_python)] if venv_python else []
    return [python, "-m", "pip", *target, "--isolated", "--disable-pip-version-check", *args]


def build_wheel(work: Path) -> Path:
    """The core wheel from this checkout (on a runner it comes from PyPI or the action's folder)."""
    out = work / "dist"
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT)])
    return next(out.glob("deltatrain-*.whl"))


def make_repo(work: Path) -> Path:
    """A git repository holding the example assistant, one commit."""
    repo = work / "repo"
    shutil.copytree(EXAMPLE, repo)
    env = {**CLEAN_ENV, "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "b@example.com",
           "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "b@example.com"}
    run(["git", "init", "-q", "-b", "main", str(repo)])
    run(["git", "-C", str(repo), "add", "-A"], env=env)
    run(["git", "-C", str(repo), "commit", "-qm", "assistant"], env=env)
    return repo


def commit_change(repo: Path) -> None:
    """Add two greet examples and commit (a change `auto` finetunes)."""
    nlu = repo / "data" / "nlu.yml"
    text = nlu.read_text(encoding="utf-8")
    marker = "- intent: greet\n  examples: |\n"
    if marker not in text:
        raise SystemExit(f"{nlu}: no `greet` intent block to extend")
    nlu.write_text(text.replace(marker, marker + NEW_EXAMPLES, 1), encoding="utf-8")
    env = {**CLEAN_ENV, "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "b@example.com",
           "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "b@example.com"}
    run(["git", "-C", str(repo), "commit", "-qam", "more greetings"], env=env)


def seed_store(repo: Path, store: Path, epochs: int) -> float:
    """Publish the model of HEAD with this checkout's own environment (not timed as runner work)."""
    env = {**CLEAN_ENV, "PYTHONPATH": str(ROOT)}
    return run([sys.executable, "-m", "pipeline", "ci", "-C", str(repo), "--store", str(store),
                "--epochs", str(epochs), "--no-pr-comment"], env=env)


def decide_phase(python: str, wheel: Path, repo: Path, store: Path, work: Path, name: str) -> dict[str, Any]:
    """New venv, core install from PyPI (no cache), `deltatrain ci --decide-only`; times and sizes."""
    venv = work / f"venv-{name}"
    outputs = work / f"outputs-{name}.txt"
    outputs.write_text("")
    wheels = work / f"core-wheels-{name}"
    started = time.perf_counter()
    t_venv = run([python, "-m", "venv", "--without-pip", str(venv)])
    # as action.yml: the pinned lock with --no-deps (no resolver round trips), plus the package itself;
    # downloading and installing are timed apart (the download is this machine's network)
    t_download = run(pip(python, None, "download", "-q", "--no-cache-dir", "--no-deps", "--only-binary=:all:",
                         "-d", str(wheels), "-r", str(ROOT / "requirements" / "core.lock")))
    t_install = run(pip(python, venv / "bin" / "python", "install", "-q", "--no-index", "--find-links", str(wheels),
                        "--no-compile", "--no-deps", "-r", str(ROOT / "requirements" / "core.lock"), str(wheel)))
    env = {**CLEAN_ENV, "GITHUB_OUTPUT": str(outputs)}
    t_decide = run([str(venv / "bin" / "deltatrain"), "ci", "-C", str(repo), "--store", str(store),
                    "--decide-only", "--no-pr-comment"], env=env)
    total = time.perf_counter() - started
    packages = site_packages(venv)
    text = outputs.read_text()
    return {
        "venv_s": round(t_venv, 2),
        "download_s": round(t_download, 2),
        "download_mb": size_mb(wheels),
        "install_s": round(t_install, 2),
        "decide_s": round(t_decide, 2),
        "total_s": round(total, 2),
        "site_packages_mb": size_mb(packages),
        "venv_mb": size_mb(venv),
        "tensorflow_installed": has_package(packages, "tensorflow"),
        "numpy_installed": has_package(packages, "numpy"),
        "needs_training": "needs-training<<" in text and "\ntrue\n" in text.split("needs-training<<", 1)[1],
        "venv": str(venv),
    }


LOCKS_TO_TRAIN = ("train.lock", "models.lock")


def download_training_wheels(python: str, wheelhouse: Path) -> float:
    """Download the wheels of the training packages (the network part of an uncached install)."""
    seconds = 0.0
    for lock in LOCKS_TO_TRAIN:
        seconds += run(pip(python, None, "download", "-q", "--no-cache-dir", "--no-deps", "--only-binary=:all:",
                           "-d", str(wheelhouse), "-r", str(ROOT / "requirements" / lock)))
    return seconds


def train_install(python: str, venv: Path, target: Path, wheelhouse: Path) -> float:
    """``pip install --target`` of the training packages from wheels on disk, as the Action does."""
    seconds = 0.0
    for lock in LOCKS_TO_TRAIN:
        seconds += run(pip(python, venv / "bin" / "python", "install", "-q", "--no-index", "--find-links",
                           str(wheelhouse), "--no-deps", "--target", str(target),
                           "-r", str(ROOT / "requirements" / lock)))
    return seconds


def train_phase(venv: Path, target: Path, repo: Path, store: Path) -> float:
    """The Action's second step: the full `deltatrain ci` with the training folder on the path."""
    env = {**CLEAN_ENV, "PYTHONPATH": str(target)}
    return run([str(venv / "bin" / "deltatrain"), "ci", "-C", str(repo), "--store", str(store),
                "--no-pr-comment"], env=env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--python", default=shutil.which("python3.11") or sys.executable,
                        help="the runner's Python (setup-python's); default python3.11 on PATH")
    parser.add_argument("--seed-epochs", type=int, default=5, help="epochs of the model seeded into the store")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--skip-only", action="store_true", help="only the skip scenario (no TensorFlow download)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of the skip scenario, each from a new venv")
    args = parser.parse_args()
    results: dict[str, Any] = {"python": args.python}
    with tempfile.TemporaryDirectory(prefix="deltatrain-fresh-") as tmp:
        work = Path(tmp)
        wheel = build_wheel(work)
        repo = make_repo(work)
        store = work / "store"
        results["seed_store_s"] = round(seed_store(repo, store, args.seed_epochs), 1)

        runs = []
        for index in range(args.repeat):
            skip = decide_phase(args.python, wheel, repo, store, work, f"skip-{index}")
            if skip["needs_training"]:
                raise SystemExit("the skip scenario decided to train: the store does not hold HEAD's model")
            skip.pop("venv")
            runs.append(skip)
            print(json.dumps({"skip": skip}, indent=2), flush=True)
        results["skip"] = runs
        if not args.skip_only:
            commit_change(repo)
            finetune: dict[str, Any] = {}
            for mode in ("uncached", "pip-cache", "restored-folder"):
                # each run starts from the same store: HEAD~1's model, so each decides finetune
                run_store = work / f"store-{mode}"
                shutil.copytree(store, run_store)
                decided = decide_phase(args.python, wheel, repo, run_store, work, f"finetune-{mode}")
                if not decided["needs_training"]:
                    raise SystemExit("the finetune scenario decided not to train")
                venv = Path(decided["venv"])
                target = work / f"train-{mode}"
                wheelhouse = work / "wheels"
                if mode == "uncached":  # download every wheel, then install
                    download = download_training_wheels(args.python, wheelhouse)
                    install = download + train_install(args.python, venv, target, wheelhouse)
                    run(["tar", "-I", "zstd", "-cf", str(work / "train.tar.zst"), "-C", str(target), "."])
                    results["train_download_s"] = round(download, 2)
                    results["train_wheels_mb"] = size_mb(wheelhouse)
                    results["train_folder_mb"] = size_mb(target)
                    results["train_cache_tar_mb"] = round((work / "train.tar.zst").stat().st_size / 1e6, 1)
                elif mode == "pip-cache":  # the wheels are on disk: install only
                    install = train_install(args.python, venv, target, wheelhouse)
                else:  # what actions/cache does on a hit: unpack the zstd tar of the folder
                    target.mkdir()
                    install = run(["tar", "-I", "zstd", "-xf", str(work / "train.tar.zst"), "-C", str(target)])
                trained = train_phase(venv, target, repo, run_store)
                finetune[mode] = {
                    "decide_total_s": decided["total_s"],
                    "train_install_s": round(install, 2),
                    "train_ci_s": round(trained, 2),
                    "total_s": round(decided["total_s"] + install + trained, 2),
                }
                print(json.dumps({mode: finetune[mode]}, indent=2), flush=True)
            results["finetune"] = finetune
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
