"""An output side that cannot be written (docs/reliability.md, "A full disk is one line"):
`assist train` on a new or an unfinished run, `assist sweep` and `assist export --to
tensorboard` on a read-only file system, and a file system out of inodes when the run creates
checkpoints/, each end with one `assist: error:` line naming the path, exit 1, and nothing
already on disk changed.

Tested for real where the kernel allows user namespaces (a read-only bind mount and a tmpfs of
7 inodes, mounted without root by output_fs_cases.in_namespace), and everywhere with the same
errors injected at os.mkdir and os.open (read-only, permission refused, quota)."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import output_fs_cases
from output_fs_cases import commands, prepare, run

# the directory each command's one line names (under the read-only tree)
NAMED = {"train new": "new", "train unfinished": "unfinished/.assist.lock", "sweep": "sweep",
         "export tensorboard": "finished/tensorboard"}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> tuple[Path, Path]:
    """A tree holding an unfinished and a finished run, and a sweep spec beside it."""
    root = tmp_path_factory.mktemp("output-fs")
    tree, spec = root / "tree", root / "spec.yaml"
    tree.mkdir()
    threads = __import__("torch").get_num_threads()
    prepare(tree, spec)
    __import__("torch").set_num_threads(threads)
    return tree, spec


def snapshot(tree: Path) -> dict[str, str]:
    return {str(p.relative_to(tree)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(tree.rglob("*"))}


def one_error(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("assist: error:")]
    assert len(errors) == 1, stderr
    return errors[0]


def check(results: dict, tree: Path, reason: str) -> None:
    for name, named in NAMED.items():
        status, stderr = results[name]
        assert status == 1, (name, stderr)
        assert one_error(stderr) == f"assist: error: {reason} writing {tree / named}", (name, stderr)


def test_a_read_only_file_system_and_no_inodes_are_one_line(tmp_path, prepared):
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "true"], capture_output=True)
    if probe.returncode != 0:   # the injected faults below run everywhere
        pytest.skip("this machine does not allow user namespaces to mount read-only file systems")
    tree, spec = tmp_path / "tree", tmp_path / "spec.yaml"
    shutil.copytree(prepared[0], tree)
    shutil.copy(prepared[1], spec)
    before, inodes, out = snapshot(tree), tmp_path / "inodes", tmp_path / "results.json"
    inodes.mkdir()
    script = Path(output_fs_cases.__file__)
    done = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", sys.executable, str(script),
                           str(tree), str(spec), str(inodes), str(out)],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    results = json.loads(out.read_text())
    check(results, tree, "read-only file system")
    assert snapshot(tree) == before
    status, stderr = results["no inodes"]
    assert status == 1 and one_error(stderr).startswith(f"assist: error: no inodes left on device writing "), stderr
    assert one_error(stderr).endswith(str(inodes / "run" / "checkpoints")), stderr
    # what was written before stays: the run directory, its config and its first epoch
    assert results["no inodes, listing"][1].split() == [".assist.lock", "assist-run.json", "config.yaml",
                                                         "metrics.jsonl", "train.log"]
    status, stderr = results["inodes again"]   # rerun once there are inodes: it completes
    assert status == 0, stderr


WRITING = os.O_WRONLY | os.O_RDWR | os.O_CREAT


@pytest.mark.parametrize("code, reason", [(errno.EROFS, "read-only file system"),
                                          (errno.EACCES, "permission denied"),
                                          (errno.EDQUOT, "no space left on device")])
def test_injected_output_errors_are_one_line(tmp_path, prepared, monkeypatch, keep_torch_threads, code, reason):
    tree, spec = tmp_path / "tree", prepared[1]
    shutil.copytree(prepared[0], tree)
    before = snapshot(tree)
    real_mkdir, real_open = os.mkdir, os.open

    def refused(path) -> OSError:
        return OSError(code, os.strerror(code), str(path))

    def mkdir(path, *args, **kwargs):
        if str(path).startswith(str(tree)):
            raise refused(path)
        return real_mkdir(path, *args, **kwargs)

    def open_(path, flags, *args, **kwargs):
        if flags & WRITING and str(path).startswith(str(tree)):
            raise refused(path)
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", mkdir)
    monkeypatch.setattr(os, "open", open_)
    results = {name: run(argv) for name, argv in commands(tree, spec).items()}
    monkeypatch.undo()
    check(results, tree, reason)
    assert snapshot(tree) == before
