"""examples/mnist_assist.py: PyTorch's MNIST example plus a few ASSIST lines, run on real MNIST."""

from __future__ import annotations

import difflib
import re
import runpy
import shlex
import sys
from pathlib import Path

import pytest

import assist.integration
from conftest import REPO
from test_docs_integration import doc_commands

ORIGINAL = REPO / "examples" / "mnist_original.py"
ASSIST = REPO / "examples" / "mnist_assist.py"


def changed_lines(old: list[str], new: list[str]) -> tuple[int, int]:
    """(lines of the new file added or edited, lines of the old file removed or edited)."""
    added = removed = 0
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=old, b=new, autojunk=False).get_opcodes():
        if tag != "equal":
            added += j2 - j1
            removed += i2 - i1
    return added, removed


def test_the_integration_is_at_most_ten_changed_lines():
    old, new = ORIGINAL.read_text().splitlines(), ASSIST.read_text().splitlines()
    added, removed = changed_lines(old, new)
    # a changed line is a line of the ASSIST file that the original does not have
    assert 0 < added <= 10, f"{added} lines added or edited"
    assert removed <= added, f"{removed} original lines removed or edited"
    assert not re.search(r"^\s*(import|from) torchvision", ORIGINAL.read_text(), re.M)


def run_example(path: Path, args: list[str], monkeypatch, capsys) -> str:
    monkeypatch.setattr(sys, "argv", [str(path), *args])
    runpy.run_path(str(path), run_name="__main__")
    return capsys.readouterr().out


@pytest.fixture
def recorded_selectors(monkeypatch):
    """Every Selector the example builds, to inspect what the strategy did."""
    made = []

    class Recording(assist.integration.Selector):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(assist.integration, "Selector", Recording)
    return made


def accuracies_in(out: str) -> list[float]:
    return [int(a) / int(b) for a, b in re.findall(r"Accuracy: (\d+)/(\d+)", out)]


DOC_RUNS = doc_commands("python examples/mnist_assist.py")


def option(tokens: list[str], name: str) -> str:
    return tokens[tokens.index(name) + 1]


@pytest.mark.parametrize("command", DOC_RUNS, ids=[option(shlex.split(c), "--strategy") for c in DOC_RUNS])
def test_mnist_example_runs_as_the_docs_show(command, shared_data_dir, monkeypatch, capsys, recorded_selectors):
    """The commands of docs/integration.md, run from the repository root."""
    tokens = shlex.split(command)
    assert tokens[:2] == ["python", "examples/mnist_assist.py"]
    # the doc's folder is $ASSIST_DATA_DIR (unexpanded by shlex): here, the tests' copy of MNIST
    assert "$ASSIST_DATA_DIR" in tokens, command
    args = [str(shared_data_dir) if arg == "$ASSIST_DATA_DIR" else arg for arg in tokens[2:]]
    strategy, epochs, limit = option(args, "--strategy"), int(option(args, "--epochs")), int(option(args, "--limit"))
    monkeypatch.chdir(REPO)
    out = run_example(ASSIST, args, monkeypatch, capsys)
    accuracies = accuracies_in(out)
    assert len(accuracies) == epochs and accuracies[-1] > 0.3, out  # learnt something (chance: 0.1)
    (selector,) = recorded_selectors
    stats = selector.epoch_stats()
    assert selector.epoch == epochs and stats["samples_trained"] > 0
    if strategy == "batchwise":
        # every sample scored by the no-grad forward, only the misclassified ones trained
        assert stats["samples_scored"] == limit and stats["samples_trained"] < limit
    elif strategy == "infobatch":
        # epoch 1 scores all samples alike; from epoch 2 on part of the well-learnt ones are pruned
        assert epochs >= 2 and stats["infobatch_pruned"] > 0
        assert stats["samples_trained"] == limit - stats["infobatch_pruned"]
        assert stats["samples_scored"] == 0  # InfoBatch reuses training losses, no extra forward


def test_original_example_still_runs(shared_data_dir, monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)  # (it writes nothing without --save-model)
    out = run_example(ORIGINAL, ["--data-dir", str(shared_data_dir), "--epochs", "1", "--limit", "320",
                                 "--dry-run", "--test-batch-size", "320"], monkeypatch, capsys)
    assert "Train Epoch: 1 [0/320" in out and len(accuracies_in(out)) == 1


@pytest.mark.parametrize("example", [ORIGINAL, ASSIST], ids=["original", "assist"])
def test_the_examples_read_the_gzipped_files_a_download_leaves(example, tmp_path):
    """assist train ... download=true (the doc's way to get MNIST) stores the IDX files as .gz."""
    import gzip

    import numpy as np
    from test_data_mnist import idx_bytes

    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    images = np.arange(3 * 28 * 28, dtype=np.uint8).reshape(3, 28, 28)
    for split in ("train", "t10k"):
        (raw / f"{split}-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(images)))
        (raw / f"{split}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.array([4, 0, 9], np.uint8))))
    module = runpy.run_path(str(example), run_name="example")
    data = module["MNIST"](str(tmp_path), train=False)
    assert len(data) == 3 and data[2][1] == 9 and data.data[1, 0].numpy().tolist() == images[1].tolist()
