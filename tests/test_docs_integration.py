"""Every command in docs/integration.md runs, every code block matches the code it shows.

* ```bash lines run in a scratch checkout (the ``python examples/...`` ones in the example
  tests, which import ``doc_commands`` from here and check what the strategies did);
  ``pip install`` lines must name extras that pyproject.toml declares; servers
  (``tensorboard``, ``mlflow ui``) must come up and serve;
* complete ```python blocks are executed; ``# excerpt from FILE`` blocks must appear in FILE;
* the ```diff block is the actual diff of the two MNIST example files.
"""

from __future__ import annotations

import difflib
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

from conftest import REPO

DOC = REPO / "docs" / "integration.md"
EXCERPT = re.compile(r"^# excerpt from (\S+)\n")
SERVERS = ("tensorboard", "mlflow")
RUN_ELSEWHERE = {  # command prefix -> the test that runs these commands from the doc
    "python examples/mnist_assist.py": "tests/test_integration_mnist_example.py",
    "python examples/lightning_assist.py": "tests/test_integration_lightning.py",
}


def code_blocks(text: str | None = None) -> list[tuple[str, str]]:
    text = DOC.read_text() if text is None else text
    return [(lang, body) for lang, body in re.findall(r"^```(\w*)\n(.*?)^```", text, re.S | re.M)]


def bash_lines(body: str) -> list[str]:
    joined = body.replace("\\\n", " ")
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]


def doc_commands(prefix: str = "") -> list[str]:
    """The doc's shell commands (in order) that start with ``prefix``."""
    return [line for lang, body in code_blocks() if lang == "bash" for line in bash_lines(body)
            if line.startswith(prefix)]


def split_env(command: str) -> tuple[dict[str, str], list[str]]:
    tokens = shlex.split(command)
    env = {}
    while tokens and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", tokens[0]):
        key, value = tokens.pop(0).split("=", 1)
        env[key] = value
    return env, tokens


# ---------------------------------------------------------------- static checks
def test_every_block_is_of_a_known_kind_and_every_command_has_a_runner():
    kinds = {lang for lang, _ in code_blocks()}
    assert kinds <= {"bash", "python", "diff"}, kinds
    for command in doc_commands():
        _, tokens = split_env(command)
        assert tokens[0] in ("assist", "pip", *SERVERS) or any(command.startswith(p) for p in RUN_ELSEWHERE), command


def test_the_doc_runs_both_a_thesis_filter_and_infobatch_in_the_mnist_example():
    strategies = {shlex.split(c)[shlex.split(c).index("--strategy") + 1]
                  for c in doc_commands("python examples/mnist_assist.py")}
    assert {"batchwise", "infobatch"} <= strategies


def test_diff_block_is_the_real_diff():
    (diff,) = [body for lang, body in code_blocks() if lang == "diff"]
    old = (REPO / "examples" / "mnist_original.py").read_text().splitlines()
    new = (REPO / "examples" / "mnist_assist.py").read_text().splitlines()
    real = difflib.unified_diff(old, new, "examples/mnist_original.py", "examples/mnist_assist.py", lineterm="", n=1)
    assert [line.rstrip() for line in diff.splitlines()] == [line.rstrip() for line in real]


def test_excerpts_are_verbatim():
    excerpts = [(EXCERPT.match(body), body) for lang, body in code_blocks() if lang == "python"]
    found = [(m.group(1), body[m.end():]) for m, body in excerpts if m]
    assert found, "the Lightning section shows excerpts of the example"
    for path, text in found:
        assert text in (REPO / path).read_text(), f"excerpt not found verbatim in {path}:\n{text}"


def test_pip_lines_name_declared_extras():
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"].get("optional-dependencies", {})
    for command in doc_commands("pip install"):
        for extras in re.findall(r"\[([\w,-]+)\]", command):
            missing = [e for e in extras.split(",") if e not in declared]
            assert not missing, f"{command!r}: extras {missing} are not in pyproject.toml"


# ---------------------------------------------------------------- running it
def start_server(tokens: list[str], cwd: Path, started: list[subprocess.Popen]) -> subprocess.Popen:
    # port 0: any free port, so the check never collides with a running server
    process = subprocess.Popen([*tokens, "--port", "0"], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True)
    started.append(process)
    return process


def wait_until_serving(process: subprocess.Popen, limit_s: float = 90.0) -> str:
    deadline, seen = time.monotonic() + limit_s, []
    for line in process.stdout:
        seen.append(line)
        if re.search(r"http://(localhost|127\.0\.0\.1):\d+", line):
            return line
        if time.monotonic() > deadline:
            break
    raise AssertionError("server did not come up:\n" + "".join(seen[-20:]))


def stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:  # each server runs in its own session: stop it and its workers
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def test_every_command_and_python_block_runs(tmp_path, monkeypatch, capsys):
    import importlib.util

    from conftest import unavailable

    missing = [m for m in ("lightning", "tensorboard", "wandb", "mlflow") if importlib.util.find_spec(m) is None]
    if missing:  # the guide's blocks use every extra
        unavailable(f"the guide's blocks need the extras ({', '.join(missing)}): pip install -e '.[all]'")
    monkeypatch.chdir(tmp_path)
    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "WANDB_PROJECT", "WANDB_MODE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    servers, started = {}, []  # TensorBoard starts at once (it watches runs/ fill up), MLflow's UI at the end
    try:
        run_doc(servers, started, tmp_path, monkeypatch, capsys)
    finally:
        stop(started)


def run_doc(servers, started, tmp_path, monkeypatch, capsys) -> None:
    from assist.cli import main as cli_main

    for lang, body in code_blocks():
        if lang == "python" and not EXCERPT.match(body):
            exec(compile(body, f"{DOC.name} python block", "exec"), {"__name__": "__doc_block__"})
            continue
        if lang != "bash":
            continue
        for command in bash_lines(body):
            env, tokens = split_env(command)
            if tokens[0] == "pip" or any(command.startswith(p) for p in RUN_ELSEWHERE):
                continue  # checked above / run by the example tests
            if tokens[0] in SERVERS:
                servers[tokens[0]] = start_server(tokens, tmp_path, started) if tokens[0] == "tensorboard" else tokens
                continue
            with monkeypatch.context() as scoped:
                for key, value in env.items():
                    scoped.setenv(key, value)
                cli_main(tokens[1:])
    out = capsys.readouterr().out
    assert re.search(r"digits-batchwise \[[\d., ]+\]", out), out  # the MLflow block printed the history
    assert (tmp_path / "runs" / "digits-infobatch" / "tensorboard").is_dir()
    assert list((tmp_path / "runs" / "digits-infobatch" / "wandb").glob("offline-run-*"))
    assert list(servers) == ["tensorboard", "mlflow"]
    mlflow_ui = start_server(servers["mlflow"], tmp_path, started)
    wait_until_serving(servers["tensorboard"])
    wait_until_serving(mlflow_ui)
    assert sys.modules.get("torchvision") is None
