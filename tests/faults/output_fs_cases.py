"""The commands of test_output_file_system.py, run in one process against an output tree that
cannot be written (a read-only bind mount in a user namespace, or injected errors): each ends
with an exit status and what it printed on stderr. Run as a script inside a user namespace
(in_namespace), it writes {case: [status, stderr]} as JSON."""

from __future__ import annotations

import contextlib
import io
import json
import sys
from pathlib import Path

from assist.cli import main

TRAIN = ["dataset=synthetic", "model=fcnet16", "epochs=2", "num_threads=1", "rng_seed=2"]
SPEC = "name: ro\nbase: {dataset: synthetic, model: fcnet16, epochs: 1, num_threads: 1}\nexperiments: {a: {}}\n"


def commands(tree: Path, spec: Path) -> dict[str, list[str]]:
    """``tree`` holds (before it is made read-only) an unfinished and a finished run."""
    return {"train new": ["train", "--out", str(tree / "new"), *TRAIN],
            "train unfinished": ["train", "--out", str(tree / "unfinished"), *TRAIN],
            "sweep": ["sweep", str(spec), "--out", str(tree / "sweep")],
            "export tensorboard": ["export", str(tree / "finished"), "--to", "tensorboard"]}


def prepare(tree: Path, spec: Path) -> None:
    """An unfinished run (killed after epoch 1's checkpoint, as far as its files tell) and a
    finished one; the sweep's spec, outside the tree."""
    main(["train", "--out", str(tree / "unfinished"), *TRAIN])
    (tree / "unfinished" / "summary.json").unlink()
    for name in ("epoch-00002.pt", "epoch-00002.pt.sha256"):
        (tree / "unfinished" / "checkpoints" / name).unlink()
    main(["train", "--out", str(tree / "finished"), *TRAIN])
    spec.write_text(SPEC)


def run(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            main(argv)
            status = 0
        except SystemExit as stop:
            status = stop.code if isinstance(stop.code, int) else 1
    return status, err.getvalue()


def in_namespace(tree: Path, spec: Path, inodes: Path, out: Path) -> None:
    """Inside ``unshare --user --map-root-user --mount``: ``tree`` bound read-only, a tmpfs of
    7 inodes on ``inodes`` (the run directory's files take them all, so creating checkpoints/
    fails), then the same run again once the tmpfs has inodes to spare."""
    import subprocess

    for command in (["mount", "--bind", str(tree), str(tree)], ["mount", "-o", "remount,bind,ro", str(tree)],
                    ["mount", "-t", "tmpfs", "-o", "size=8m,nr_inodes=7", "tmpfs", str(inodes)]):
        subprocess.run(command, check=True)
    results = {name: run(argv) for name, argv in commands(tree, spec).items()}
    results["no inodes"] = run(["train", "--out", str(inodes / "run"), *TRAIN])
    results["no inodes, listing"] = (0, " ".join(sorted(p.name for p in (inodes / "run").iterdir())))
    subprocess.run(["mount", "-o", "remount,nr_inodes=1000", str(inodes)], check=True)
    results["inodes again"] = run(["train", "--out", str(inodes / "run"), *TRAIN])
    out.write_text(json.dumps(results))


if __name__ == "__main__":
    in_namespace(*map(Path, sys.argv[1:5]))
