"""Local sweeps: run what is missing, resume what is unfinished, keep going past failed runs."""

import os
import signal
import threading
import time
from pathlib import Path

import pytest
import yaml

from assist.api import train
from assist.cli import main
from assist.events import Callback
from assist.experiments.local import LocalPool
from assist.tracking.locks import lock_holder
from assist.experiments.runner import RunTask
from assist.experiments.spec import SpecError
from assist.experiments.sweep import check_models_fit, describe_plan, plan_sweep, run_sweep
from assist.tracking import RunStore

SPEC = {
    "name": "tiny",
    "base": {"dataset": "synthetic", "model": "fcnet16", "epochs": 3, "batch_size": 16, "num_threads": 1},
    "experiments": {
        "none": {},
        "epochwise": {"epoch_filtering": True},
        "batchwise": {"batch_filtering": True, "accumulation_batch_size": 32},
        "diverges": {"learning_rate": 1e4},
    },
    "seeds": [0],
}



class StopAt(Callback):
    """Stops a run mid-epoch the way a kill would: nothing after this point is written."""

    def on_batch_end(self, trainer, **info) -> None:
        if trainer.state.epoch == 1:
            raise KeyboardInterrupt


def test_local_sweep_skips_done_resumes_unfinished_and_survives_a_failed_run(tmp_path: Path, capsys,
                                                                             keep_torch_threads):
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    out = tmp_path / "out"
    plan = plan_sweep(spec, out)
    assert len(plan.runs) == 4  # archetype (= the twins and "none"), epochwise, batchwise, diverging
    assert "4 missing; would start 4" in describe_plan(plan)
    assert not out.exists()  # planning writes nothing

    # one run is already unfinished (killed mid-epoch 2), one already done
    epochwise = next(r for r in plan.runs if r.config.strategy == "epochwise")
    archetype = next(r for r in plan.runs if r.config.strategy == "archetype" and r.config.learning_rate != 1e4)
    with pytest.raises(KeyboardInterrupt):
        train(epochwise.config, out=out / epochwise.name, callbacks=[StopAt()])
    train(archetype.config, out=out / archetype.name)
    listing = describe_plan(plan)
    assert "1 done, 0 collapsed, 0 running, 0 failed, 1 incomplete, 2 missing; would start 3" in listing

    lines: list[str] = []
    report = run_sweep(plan, workers=2, echo=lines.append)
    by_name = {o.name: o for o in report.outcomes}
    assert sorted(by_name) == sorted(r.name for r in plan.runs if r.run_id != archetype.run_id)
    assert by_name[epochwise.name].status == "completed" and by_name[epochwise.name].resumed_from == 1
    failed = [o for o in report.outcomes if o.status == "failed"]
    assert len(failed) == 1 and "non-finite loss at epoch 1, step" in failed[0].reason
    assert [o.status for o in report.problems] == ["failed"]
    assert any("not started: 1 done" in line for line in lines)
    assert (out / "logs" / f"{epochwise.name}.log").read_text().count("resuming after epoch 1 (its checkpoint)") == 1

    # the resumed run equals an uninterrupted one
    reference = train(epochwise.config).history
    resumed = RunStore(out / epochwise.name).read_metrics()
    assert [r["test_loss_mean"] for r in resumed] == [r["test_loss_mean"] for r in reference]

    # rerunning starts nothing; status lists every run with counts and the failure's reason
    assert run_sweep(plan, workers=2, echo=lines.append).outcomes == []
    main(["status", str(out)])
    status = capsys.readouterr().out
    assert "4 runs: 3 done, 0 collapsed, 0 running, 1 failed, 0 incomplete, 0 missing" in status
    assert "non-finite loss at epoch 1" in status

    # --retry-failed starts the failed run over (and it fails the same way)
    again = run_sweep(plan, workers=1, retry_failed=True, echo=lines.append)
    assert [o.status for o in again.outcomes] == ["failed"]


def test_a_model_that_cannot_take_the_data_fails_before_anything_runs(tmp_path: Path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"base": {"dataset": "synthetic", "epochs": 1},
                                    "grid": {"model": ["fcnet16", "lenet"]}}))
    plan = plan_sweep(spec, tmp_path / "out")
    with pytest.raises(SpecError, match="model 'lenet' expects 32x32 inputs, the data set has 8x8"):
        check_models_fit(plan)
    with pytest.raises(SpecError, match="lenet"):
        run_sweep(plan, echo=lambda line: None)
    assert not (tmp_path / "out").exists()


def test_sweep_command_dry_run_and_errors(tmp_path: Path, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    main(["sweep", str(spec), "--out", str(tmp_path / "out"), "--dry-run", "--set", "epochs=1"])
    listing = capsys.readouterr().out
    assert "sweep 'tiny': 4 runs (2 strategic, 2 archetype)" in listing
    assert "would start 4" in listing
    spec.write_text(yaml.safe_dump({**SPEC, "grid": {"learning_rat": [0.1]}}))
    with pytest.raises(SystemExit) as exit_info:
        main(["sweep", str(spec), "--dry-run"])
    assert exit_info.value.code == 2
    assert "unknown config key 'learning_rat' (did you mean 'learning_rate'?)" in capsys.readouterr().err


def test_a_worker_that_dies_costs_only_its_run(tmp_path: Path):
    config = {"dataset": "synthetic", "model": "fcnet16", "epochs": 30, "batch_size": 1, "learning_rate": 0.01,
              "num_threads": 1}
    tasks = [RunTask("aaaa", "slow-aaaa", str(tmp_path), config),
             RunTask("bbbb", "quick-bbbb", str(tmp_path), {**config, "epochs": 1})]

    def kill_the_worker() -> None:
        deadline = time.monotonic() + 120
        while len(RunStore(tmp_path / "slow-aaaa").read_metrics()) < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(lock_holder(tmp_path / ".locks" / "aaaa.lock")["pid"], signal.SIGKILL)

    killer = threading.Thread(target=kill_the_worker)
    killer.start()
    outcomes = LocalPool(1).run(tasks)
    killer.join()
    assert [(o.name, o.status) for o in outcomes] == [("slow-aaaa", "crashed"), ("quick-bbbb", "completed")]
    assert "killed by signal 9" in outcomes[0].reason
    assert not RunStore(tmp_path / "slow-aaaa").finished  # left resumable


def test_dry_run_names_every_bad_run_and_key(tmp_path: Path, capsys):
    """Strategy options are validated at planning: one line per bad run, naming the key."""
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "bad", "base": {"dataset": "synthetic", "model": "fcnet16", "epochs": 1},
        "experiments": {
            "fine": {"batch_filtering": True},
            "ratio": {"strategy": "infobatch", "strategy_options": {"ratio": 1.5}},
            "topk": {"batch_filtering": True, "selector": "top_k"},
            "idle": {"strategy": "infobatch", "filter": "soft"},
        },
        "seeds": [0, 1],
    }))
    with pytest.raises(SystemExit) as exit_info:
        main(["sweep", str(spec), "--out", str(tmp_path / "out"), "--dry-run"])
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 6 and all(line.startswith("assist: error: ") for line in lines)
    assert sum("experiment 'ratio'" in line and "strategy_options.ratio" in line for line in lines) == 2
    assert sum("experiment 'topk'" in line and "needs select_k" in line for line in lines) == 2
    assert sum("experiment 'idle'" in line and "filter='soft': no effect for strategy 'infobatch'" in line
               for line in lines) == 2
    assert not (tmp_path / "out").exists()


def test_a_sweep_speaks_in_its_own_terms_and_claims_no_resume_it_did_not_make(tmp_path):
    """A run whose only checkpoint is corrupt is reported without a "resumed from epoch"
    claim, and with the sweep's way to start it over (assist sweep has no --restart)."""
    from assist.experiments.runner import for_sweeps

    assert "assist sweep has no --restart" in for_sweeps("... pass --restart to start the run over")
    spec = tmp_path / "spec.yaml"
    spec.write_text("base: {dataset: synthetic, model: fcnet16, epochs: 3, batch_size: 8, num_threads: 1}\n")
    plan = plan_sweep(spec, tmp_path / "out")
    run = plan.runs[0]
    path = tmp_path / "out" / run.name

    class Crash(Callback):
        def on_epoch_end(self, trainer, *, epoch, **info):
            if epoch == 1:
                raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError):
        train(run.config, out=path, callbacks=[Crash()])
    (checkpoint,) = (path / "checkpoints").glob("epoch-*.pt")
    checkpoint.write_bytes(b"damaged")
    lines: list[str] = []
    report = run_sweep(plan, workers=1, echo=lines.append)
    (outcome,) = report.outcomes
    assert outcome.status == "error" and outcome.resumed_from is None
    assert "no usable checkpoint" in outcome.reason and "assist sweep has no --restart" in outcome.reason
    assert not any("resumed from epoch" in line for line in lines), lines
