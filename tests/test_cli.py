"""The command line: runs, the README's main job, and bad input (one line, exit 2, nothing written)."""

import json
import subprocess
import sys

import pytest
import yaml

TINY = ["dataset=synthetic", "model=fcnet16", "epochs=2", "batch_size=16"]


def assist(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "assist.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def test_train_writes_a_run_directory(tmp_path):
    out = tmp_path / "run"
    result = assist("train", "--out", str(out), *TINY, "batch_filtering=true")
    assert result.returncode == 0, result.stderr
    assert "completed: batchwise on synthetic/fcnet16" in result.stdout
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["strategy"] == "batchwise" and config["epochs"] == 2
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    for key in ("wall_clock_s", "steps", "train_accuracy", "test_accuracy", "train_loss_q99", "test_loss_worst",
                "samples_scored", "samples_trained", "raw_batches_per_step", "overflow_discarded",
                "acceptance_ratio"):
        assert key in rows[0]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["rng_seed"] == 0
    # plain progress lines (not a terminal)
    assert "epoch 2/2" in result.stderr


def test_config_file_and_overrides(tmp_path):
    spec = tmp_path / "c.yaml"
    spec.write_text("dataset: synthetic\nmodel: fcnet16\nepochs: 5\nbatch_size: 16\n")
    result = assist("train", "--config", str(spec), "--out", str(tmp_path / "r"), "epochs=1")
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())["epochs"] == 1


@pytest.mark.parametrize("args, fragment", [
    (["batchsize=3"], "unknown key 'batchsize' (did you mean 'batch_size'?); valid keys:"),
    (["batch_size=0"], "batch_size"),
    (["batch_size=-2"], "batch_size"),
    (["learning_rate=-1"], "learning_rate"),
    (["epochs=two"], "epochs"),
    (["soft_margin=1.5"], "soft_margin"),
    (["model=resnet50"], "unknown model 'resnet50'"),
    (["model=lenet"], "model 'lenet' expects 32x32"),
    (["dataset=mnist", "data_dir=/nonexistent/dir"], "/nonexistent/dir"),
    (["dataset=nope"], "nope"),
    (["device=cuda:0"], "CUDA is not available"),
    (["--config", "/no/such.yaml"], "/no/such.yaml"),
    # the thesis's flags choose among its four strategies: beside a peer method they contradict it
    (["strategy=infobatch", "epoch_filtering=true", "batch_filtering=true"],
     "strategy='infobatch' conflicts with epoch_filtering=True, batch_filtering=True"),
    (["strategy=random_subset", "epoch_filtering=true"],
     "strategy='random_subset' conflicts with epoch_filtering=True, batch_filtering=False"),
])
def test_bad_input_is_one_clear_line(tmp_path, args, fragment):
    out = tmp_path / "run"
    options = [a for a in args if a.startswith("--") or a.startswith("/")]
    overrides = [a for a in args if a not in options]
    result = assist("train", "--out", str(out), *options, *TINY, *overrides)
    assert result.returncode == 2, result.stdout + result.stderr
    assert fragment in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()  # nothing half-written


def test_existing_run_is_not_overwritten(tmp_path):
    out = tmp_path / "run"
    assert assist("train", "--out", str(out), *TINY).returncode == 0
    before = (out / "metrics.jsonl").read_text()
    again = assist("train", "--out", str(out), *TINY)       # the same command again: nothing to do
    assert again.returncode == 0 and "already completed" in again.stdout, again.stderr
    other = assist("train", "--out", str(out), *TINY, "learning_rate=0.2")
    assert other.returncode == 2 and "holds a completed run of another config" in other.stderr
    assert (out / "metrics.jsonl").read_text() == before
    restarted = assist("train", "--out", str(out), "--restart", *TINY)
    assert restarted.returncode == 0


def test_compare_prints_the_thesis_table(tmp_path):
    result = assist("compare", "dataset=synthetic", "model=fcnet16", "epochs=2", "batch_size=16",
                    "--strategies", "batchwise,epochwise", "--control", "none", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    header = next(line for line in lines if line.startswith("metric"))
    assert header.split() == ["metric", "strategy", "train", "test", "ratio"]
    for metric in ("accuracy", "mean loss", "q=0.9 loss", "worst loss"):
        assert any(line.startswith(metric) and "archetype" in line for line in lines)
    # the headline, 4 metric rows, the cost table and the verdict against the twin
    assert sum("batchwise (hard, raw batch 16)" in line for line in lines) == 7
    assert lines[lines.index("synthetic / fcnet16, 2 epochs, batch 16, seed 0") + 2].startswith(
        "batchwise (hard, raw batch 16): test accuracy ")
    assert "ratio = test ÷ train" in result.stdout and f"runs written to {tmp_path}" in result.stdout
    assert len(list(tmp_path.iterdir())) == 3


def test_bad_strategy_option_leaves_nothing_behind(tmp_path):
    out = tmp_path / "run"
    result = assist("train", "--out", str(out), *TINY, "strategy=infobatch", "strategy_options.ratio=1.5")
    assert result.returncode == 2 and "strategy_options.ratio" in result.stderr
    assert "Traceback" not in result.stderr and not out.exists()


def test_a_key_with_no_effect_for_the_strategy_is_refused(tmp_path):
    out = tmp_path / "run"
    result = assist("train", "--out", str(out), *TINY, "strategy=infobatch", "filter=soft")
    assert result.returncode == 2 and "Traceback" not in result.stderr and not out.exists()
    assert result.stderr.strip() == ("assist: error: filter='soft': no effect for strategy 'infobatch', which "
                                     "takes: strategy_options (ratio, delta)")


def test_compare_honours_the_strategy_key(tmp_path):
    result = assist("compare", "dataset=synthetic", "model=fcnet16", "epochs=1", "batch_size=16",
                    "strategy=infobatch", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert any(line.startswith("accuracy") for line in result.stdout.splitlines())
    assert sum(line.lstrip().startswith("infobatch") or " infobatch " in line for line in result.stdout.splitlines()) >= 4
    # and its rs2 control at its budget (the default control)
    assert sorted(p.name.split("-")[4] for p in tmp_path.iterdir()) == ["archetype", "infobatch", "rs2"]


def test_compare_judges_a_strategy_against_its_twin_and_control_over_seeds(tmp_path):
    """One seed cannot be judged; three seeds give real verdicts, against the twin and against
    the rs2 control at the strategy's budget, and `assist report` finds the same controls."""
    from assist.api import compare
    from assist.verdicts import verdict_text

    tiny = ["dataset=digits", "epochs=1", "samples_per_class=12", "batch_size=16", "--strategies", "batchwise"]
    one = compare({"dataset": "digits", "epochs": 1, "samples_per_class": 12, "batch_size": 16},
                  [{"strategy": "batchwise"}], control="rs2")     # the API's defaults: seeds=1
    assert list(one) == ["archetype", "batchwise (hard, raw batch 16)", "rs2 @ batchwise (hard, raw batch 16)"]
    assert one["archetype"] is one.by_seed["archetype"][0] and len(one.by_seed["archetype"]) == 1
    assert [(v.strategy, v.against) for v in one.verdicts] == [("batchwise (hard, raw batch 16)", "archetype"),
                                                               ("batchwise (hard, raw batch 16)", "rs2")]
    assert verdict_text(one.verdicts).count("cannot judge (1 seed; 3 needed)") == 6
    three = assist("compare", *tiny, "--seeds", "3", "--control", "random_subset", "--out", str(tmp_path / "three"))
    assert three.returncode == 0, three.stderr
    lines = three.stdout[three.stdout.index("paired verdicts over 3 seeds"):].splitlines()
    rows = [line for line in lines if line.startswith("batchwise (hard, raw batch 16)")]
    assert [row.split()[5] for row in rows] == ["archetype", "random_subset"]
    assert all(row.split()[6] == "3" for row in rows)
    accuracy = [line for line in lines if "  test accuracy  " in line]
    assert len(accuracy) == 2 and not any("cannot judge" in line for line in accuracy)
    assert all(line.rstrip().endswith(("better", "worse", "no measurable difference")) for line in accuracy)
    names = sorted(p.name.split("-")[4] for p in (tmp_path / "three").iterdir())
    assert names == ["archetype"] * 3 + ["batchwise"] * 3 + ["random_subset"] * 3
    from assist.report.build import build_report
    from assist.report.loading import load_runs

    report = build_report(load_runs(tmp_path / "three"), figures=False)
    against = [(row[0], row[1], row[2]) for row in report.groups[0].paired.rows]
    assert ("batchwise (hard, raw batch 16)", "random_subset", "3") in against


def run_in_terminal(args: list[str], cwd) -> str:
    """Run the CLI with its output on a pseudo-terminal, as a person sees it; return the screen's bytes."""
    import os
    import pty

    master, slave = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "assist.cli", *args], stdout=slave, stderr=slave,
                               stdin=subprocess.DEVNULL, cwd=cwd, close_fds=True)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert process.wait(timeout=300) == 0
    return b"".join(chunks).decode(errors="replace")


def test_progress_on_a_terminal_shows_the_epoch_and_keeps_a_line_per_epoch(tmp_path):
    screen = run_in_terminal(["train", "dataset=synthetic", "model=fcnet16", "epochs=3", "batch_size=4",
                              "batch_filtering=true", "--out", str(tmp_path / "run")], cwd=tmp_path)
    lines = [line.split("\r")[-1] for line in screen.splitlines()]   # what stays on each line
    kept = [line for line in lines if line.startswith("[batchwise] epoch ")]
    assert [line.split()[2] for line in kept] == ["1/3", "2/3", "3/3"] and all("steps" in line for line in kept)
    assert "batchwise epoch 1/3:" in screen and "/256 [" in screen and "sample" in screen  # the bar through the epoch
