"""Data-parallel runs (docs/distributed.md): two CPU processes under gloo, spawned by the
tests through PyTorch's launcher, make the same selection decisions as one process and reach
the same model up to floating-point reduction order; a Selector loop under DDP equals the
built-in trainer under DDP; a killed two-process run resumes to its uninterrupted twin."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch

from conftest import deterministic, make_toy_dataset
from test_step_equivalence import counters, selector_loop

from assist.api import make_config
from assist.engine.distributed import Group
from assist.engine.trainer import Trainer
from assist.tracking import RunStore

WORKER = Path(__file__).resolve().parent / "distributed" / "ddp_worker.py"
DATA = {"noise": 0.8}   # hard enough that filters keep rejecting and accepting for every epoch
BASE = {"epochs": 4, "rng_seed": 5, "data_augmentation": False, "model": "fcnet100", "learning_rate": 0.05,
        "num_threads": 1}
CASES = {
    "archetype": {"strategy": "archetype", "batch_size": 16},
    "batchwise_accumulation": {"strategy": "batchwise", "batch_size": 16},
    "infobatch": {"strategy": "infobatch", "batch_size": 16},
    "selective_backprop": {"strategy": "selective_backprop", "batch_size": 16},
    # an odd batch and unstable trained sizes: shares of unequal length on the two ranks
    "batchwise_unstable_odd": {"strategy": "batchwise", "batch_size": 15, "batch_accumulation": False},
    # the reference model trained on rank 0 and broadcast; presampled sizes; gathered features
    "rho_loss": {"strategy": "rho_loss", "batch_size": 8, "strategy_options": {"cache": False, "il_epochs": 2}},
    "importance_sampling": {"strategy": "importance_sampling", "batch_size": 16},
    "divbs": {"strategy": "divbs", "batch_size": 8},
}
SELECTOR_CASES = ("batchwise_accumulation", "infobatch", "selective_backprop")
# what differs between a one- and a two-process run besides the machine: the DDP cost metrics
PARALLEL_KEYS = {"world_size", "rank_step_time_s", "rank_selection_comm_s", "selection_comm_share"}


def torchrun(*args: str, nproc: int = 2) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", *args]


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    return {**env, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory) -> dict:
    """Every case trained once by the built-in trainer and the Selector cases by a Selector
    loop, all in one two-process group."""
    folder = tmp_path_factory.mktemp("ddp")
    cases = {"data": DATA, "trainer": {name: {**BASE, **extra} for name, extra in CASES.items()},
             "batchnorm": {"selective_backprop": {**BASE, **CASES["selective_backprop"]}},
             "selector": {name: {**{k: v for k, v in BASE.items() if k != "num_threads"}, **CASES[name]}
                          for name in SELECTOR_CASES}}
    (folder / "cases.json").write_text(json.dumps(cases))
    done = subprocess.run(torchrun(str(WORKER), str(folder / "cases.json"), str(folder / "out.json")),
                          capture_output=True, text=True, timeout=300, env=environment())
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads((folder / "out.json").read_text())


def same_decisions(got: list[dict], expected: list[dict]) -> None:
    """Counts (steps, samples scored and trained, overflow, ...) equal exactly; the strategies'
    float statistics (mean scores) equal up to reduction order."""
    got, expected = [counters(row) for row in got], [counters(row) for row in expected]
    assert [sorted(row) for row in got] == [sorted(row) for row in expected]
    for a, b in zip(got, expected):
        exact = {k: v for k, v in b.items() if not isinstance(v, float)}
        assert {k: a[k] for k in exact} == exact
        assert {k: a[k] for k in b if k not in exact} == pytest.approx({k: v for k, v in b.items() if k not in exact},
                                                                      rel=1e-4)


def close_weights(got: dict, expected: dict, atol: float = 1e-5) -> None:
    for name, value in expected.items():
        a, b = torch.tensor(got[name]), torch.as_tensor(value)
        assert torch.allclose(a, b, atol=atol), f"{name} differs by {float((a - b).abs().max()):.2e}"


@pytest.mark.parametrize("name", CASES)
def test_two_processes_make_the_decisions_of_one(name, two_processes, keep_torch_threads):
    one = Trainer(make_config({**BASE, **CASES[name]}), make_toy_dataset(**DATA))
    history = one.fit().history
    two = two_processes[f"trainer:{name}"]
    assert two_processes["world_size"] == 2
    same_decisions(two["history"], history)
    assert sum(row["samples_trained"] for row in history) > 0
    for row, expected in zip(two["history"], history):
        assert abs(row["test_accuracy"] - expected["test_accuracy"]) <= 1e-4
        assert row["test_loss_mean"] == pytest.approx(expected["test_loss_mean"], rel=1e-4)
        assert row["world_size"] == 2 and len(row["rank_step_time_s"]) == 2
        assert 0.0 <= row["selection_comm_share"] < 1.0
    close_weights(two["weights"], {k: v for k, v in one.model.state_dict().items()})


def test_filters_reject_in_the_compared_runs(two_processes):
    """The comparisons above are about selection: the filters really rejected samples."""
    rows = two_processes["trainer:batchwise_accumulation"]["history"]
    assert all(row["acceptance_ratio"] < 1.0 for row in rows)
    assert sum(row["overflow_discarded"] for row in rows) > 0


def test_a_batchnorm_model_reports_the_accuracy_of_the_model_rank_0_saves(two_processes):
    """Each rank updates BatchNorm's running statistics from its own share; the epoch's
    evaluation runs with rank 0's, so the reported test metrics are those of rank 0's model
    evaluated in one process."""
    sys.path.insert(0, str(WORKER.parent))
    from ddp_worker import batchnorm_net
    from assist.data.pipeline import BatchPipeline
    from assist.engine.trainer import per_sample_losses

    run = two_processes["batchnorm:selective_backprop"]
    data = make_toy_dataset(**DATA)
    model = batchnorm_net(data)
    model.load_state_dict({k: torch.tensor(v) for k, v in run["weights"].items()})
    assert int(model[2].num_batches_tracked) > 0
    test = BatchPipeline(data.test_images, data.test_labels, data.mean, data.std, augmentation="none")
    losses, correct = per_sample_losses(model, test, None, 256)
    last = run["history"][-1]
    assert last["test_accuracy"] == pytest.approx(float(correct.float().mean()), abs=1e-9)
    assert last["test_loss_mean"] == pytest.approx(float(losses.mean()), rel=1e-6)


@pytest.mark.parametrize("name", SELECTOR_CASES)
def test_selector_under_ddp_equals_the_trainer_under_ddp(name, two_processes):
    selector, trainer = two_processes[f"selector:{name}"], two_processes[f"trainer:{name}"]
    same_decisions(selector["history"], trainer["history"])
    close_weights(selector["weights"], trainer["weights"])


def test_group_shares_cover_every_row_once():
    for world in (2, 3, 4):
        for total in range(0, 11):
            groups = [Group(rank, world) for rank in range(world)]
            spans = [g.bounds(total) for g in groups]
            assert spans[0][0] == 0 and spans[-1][1] == total
            assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
            assert [b - a for a, b in spans] == [len(t) for t in torch.arange(total).tensor_split(world)]


HOLD = Path(__file__).resolve().parent / "distributed" / "hold"   # its sitecustomize stops a run after an epoch


def launch(out: Path, nproc: int, *args: str, hold_after: int | None = None) -> subprocess.Popen:
    env = environment()
    if hold_after is not None:
        env = {**env, "ASSIST_TEST_HOLD_AFTER_EPOCH": str(hold_after),
               "PYTHONPATH": os.pathsep.join(filter(None, [str(HOLD), env.get("PYTHONPATH")]))}
    return subprocess.Popen([sys.executable, "-m", "assist", "train", "--nproc", str(nproc), "--out", str(out), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)


def kill_tree(process: subprocess.Popen) -> None:
    """SIGKILL the launcher and its workers at once (the launcher starts each in a session of its own)."""
    family = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
    for member in family:
        member.send_signal(signal.SIGKILL)
    psutil.wait_procs(family, timeout=30)
    process.wait()


RUN = ["dataset=synthetic", "model=fcnet16", "epochs=6", "batch_size=2", "strategy=infobatch", "rng_seed=3",
       "learning_rate=0.01", "num_threads=1"]


def test_killed_two_process_run_resumes_to_its_uninterrupted_twin(tmp_path):
    """Killed after its second epoch, one copy resumes on two processes (equal to the
    uninterrupted two-process twin in every deterministic metric) and one on a single process
    (the same decisions, metrics up to reduction order). The victims hold after epoch 2's
    checkpoint (tests/distributed/hold), so the kill cannot come too late on a fast machine."""
    twin = launch(tmp_path / "twin", 2, *RUN)
    victims = {n: launch(tmp_path / f"victim{n}", 2, *RUN, hold_after=2) for n in (2, 1)}
    deadline = time.monotonic() + 240
    alive = dict(victims)
    while alive:   # each is killed once two epochs and their checkpoints are on disk
        for n, victim in list(alive.items()):
            assert victim.poll() is None, victim.stdout.read()
            if (tmp_path / f"victim{n}" / "checkpoints" / "epoch-00002.pt").exists() and \
                    len(RunStore(tmp_path / f"victim{n}").read_metrics()) >= 2:
                kill_tree(victim)
                del alive[n]
        assert time.monotonic() < deadline, "the two-process runs never finished their second epoch"
        time.sleep(0.01)
    for n in victims:
        store = RunStore(tmp_path / f"victim{n}")
        assert not store.finished and len(store.read_metrics()) == 2, "the hold after epoch 2 did not hold"
    for n in victims:
        again = subprocess.run([sys.executable, "-m", "assist", "train", "--nproc", str(n),
                                "--out", str(tmp_path / f"victim{n}"), *RUN],
                               capture_output=True, text=True, timeout=240, env=environment())
        assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
        assert "resume from epoch" in (tmp_path / f"victim{n}" / "train.log").read_text()
    assert twin.wait(timeout=240) == 0, twin.stdout.read()

    def rows(path):
        return [{k: v for k, v in row.items() if k not in PARALLEL_KEYS}
                for row in deterministic(RunStore(path).read_metrics())]
    assert rows(tmp_path / "victim2") == rows(tmp_path / "twin")
    one, two = RunStore(tmp_path / "victim1").read_metrics(), RunStore(tmp_path / "twin").read_metrics()
    same_decisions(one, two)
    assert [r["test_accuracy"] for r in one] == pytest.approx([r["test_accuracy"] for r in two], abs=1e-4)
    # epoch 1 ran on two processes (its checkpoint was on disk at the kill), the last on one
    assert "world_size" in one[0] and "world_size" not in one[-1]


def test_bad_run_directory_stops_every_rank_with_one_error(tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("not a run")
    done = subprocess.run([sys.executable, "-m", "assist", "train", "--nproc", "2", "--out", str(foreign), *RUN],
                          capture_output=True, text=True, timeout=240, env=environment())
    assert done.returncode == 2, done.stdout + done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("assist: error:")]
    assert len(errors) == 1 and "foreign" in errors[0], done.stderr
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]
    assert "Traceback" not in done.stderr


EXPORTED = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "LOCAL_WORLD_SIZE", "SUBMITIT_EXECUTOR")


def test_a_slurm_job_step_sets_up_the_group_through_submitit(monkeypatch):
    """Task 1 of a two-task Slurm step (no torchrun variables): submitit's environment gives
    torch.distributed its rank, world size and rendezvous, and the group is gloo on CPU."""
    for key in EXPORTED:
        monkeypatch.delenv(key, raising=False)
    slurm = {"SLURM_JOB_ID": "4242", "SLURM_NTASKS": "2", "SLURM_PROCID": "1", "SLURM_LOCALID": "1",
             "SLURM_NODEID": "0", "SLURM_JOB_NUM_NODES": "1", "SLURM_JOB_NODELIST": "node[7-8]",
             "SLURM_STEP_NODELIST": "node7"}
    for key, value in slurm.items():
        monkeypatch.setenv(key, value)
    calls = []
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: False)
    monkeypatch.setattr(torch.distributed, "init_process_group", lambda backend: calls.append(backend))
    monkeypatch.setattr(torch.distributed, "get_rank", lambda: int(os.environ["RANK"]))
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: int(os.environ["WORLD_SIZE"]))
    try:
        group = Group.from_environment("cpu")
        exported = {key: os.environ.get(key) for key in EXPORTED}
    finally:
        for key in EXPORTED:   # what export() set: gone (monkeypatch would restore what it saw last)
            os.environ.pop(key, None)
    assert calls == ["gloo"]
    assert (group.rank, group.world_size, group.local_rank) == (1, 2, 1)
    assert exported["MASTER_ADDR"] == "node7" and exported["MASTER_PORT"].isdigit()
    assert exported["WORLD_SIZE"] == "2" and exported["RANK"] == "1"


def test_sync_batchnorm_on_cpu_is_refused_before_the_run_directory_is_touched(tmp_path):
    from assist.api import train
    from assist.config import ConfigError

    with pytest.raises(ConfigError, match="sync_batchnorm"):
        train({"dataset": "synthetic", "model": "fcnet16", "epochs": 1, "sync_batchnorm": True},
              out=tmp_path / "run", group=Group(0, 2))
    assert not (tmp_path / "run").exists()


# a scoring selection that hands out shares of every raw batch (automatic optimisation), and
# two accumulating strategies in a manually optimised module (steps skipped while they gather)
# (and ddp_spawn, which pickles the module with its Selector into the processes it spawns)
@pytest.mark.parametrize("strategy, launch", [("top_half_unstable", "ddp"), ("batchwise", "ddp"),
                                              ("selective_backprop", "ddp"), ("batchwise", "ddp_spawn")])
def test_selector_under_lightning_ddp_equals_one_device(strategy, launch, tmp_path):
    """Lightning's DDP strategy (two CPU processes, the Selector's batch sampler, Lightning's
    sampler replacement off) makes the decisions of a one-device fit and ends with its weights."""
    pytest.importorskip("lightning", reason="the lightning extra is not installed: pip install -e '.[lightning]'")
    worker = Path(__file__).resolve().parent / "distributed" / "lightning_worker.py"
    results = {}
    for nproc in (1, 2):
        out = tmp_path / f"{nproc}.json"
        done = subprocess.run([sys.executable, str(worker), str(nproc), str(out), strategy, launch], capture_output=True,
                              text=True, timeout=240, env=environment(), cwd=tmp_path)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
        results[nproc] = json.loads(out.read_text())
    one, two = results[1], results[2]
    exact = {k: v for k, v in one["stats"].items() if not isinstance(v, float)}
    assert {k: two["stats"][k] for k in exact} == exact and one["stats"]["samples_trained"] > 0
    assert two["optimizer_steps"] == one["optimizer_steps"] > 0
    close_weights(two["weights"], {k: torch.tensor(v) for k, v in one["weights"].items()}, atol=1e-6)


def test_the_workers_die_with_a_sigkilled_launcher(tmp_path):
    """SIGKILL of `assist train --nproc 2` alone (not its process tree): its workers end within
    seconds instead of training on, and the run's lock is free for the rerun."""
    victim = launch(tmp_path / "run", 2, *RUN, hold_after=1)
    deadline = time.monotonic() + 240
    while not (tmp_path / "run" / "checkpoints" / "epoch-00001.pt").exists():
        assert victim.poll() is None, victim.stdout.read()
        assert time.monotonic() < deadline, "the two-process run never finished its first epoch"
        time.sleep(0.05)
    workers = psutil.Process(victim.pid).children(recursive=True)
    assert len([w for w in workers if "assist" in " ".join(w.cmdline())]) >= 2
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    gone, alive = psutil.wait_procs(workers, timeout=15)
    assert not alive, [w.cmdline() for w in alive]
    from assist.tracking.locks import lock_holder

    assert lock_holder(tmp_path / "run" / ".assist.lock") is None
