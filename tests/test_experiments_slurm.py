"""The Slurm path through submitit: array-job parameters, and preemption -> requeue -> resume.

Always run: submitit's LocalExecutor (the same job files and signal handling as on Slurm; the
preemption signal is sent to the job's process, as Slurm does). With ASSIST_TEST_SLURM=1 (as
root, with Debian's slurm-wlm and munge installed) the same is done against a real one-node
Slurm that the test starts on localhost."""

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml

submitit = pytest.importorskip("submitit", reason="the cluster extra (submitit) is not installed")

from assist.api import train  # noqa: E402
from assist.experiments import slurm  # noqa: E402
from assist.tracking.locks import lock_holder  # noqa: E402
from assist.experiments.spec import SlurmOptions  # noqa: E402
from assist.experiments.sweep import plan_sweep, run_sweep  # noqa: E402
from assist.tracking import RunStore  # noqa: E402
from conftest import deterministic  # noqa: E402

SPEC = {"name": "slurm-test",
        "base": {"dataset": "synthetic", "model": "fcnet16", "epochs": 5, "batch_size": 1, "learning_rate": 0.01,
                 "num_threads": 1},
        "seeds": [0, 1],
        "slurm": {"time": 10, "cpus": 1, "mem": "1G", "array_parallelism": 2}}


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture
def stand_in_srun(tmp_path: Path, monkeypatch):
    """Slurm's ``srun`` is only looked up by submitit when building the executor: a stand-in
    on PATH lets the sbatch script be built and checked on a machine without Slurm."""
    if shutil.which("srun"):
        return
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def test_slurm_without_srun_is_one_clear_error(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ValueError, match="needs Slurm's srun"):
        slurm.make_executor("slurm", tmp_path, SlurmOptions())


def test_slurm_resources_from_the_spec_reach_the_sbatch_script(tmp_path: Path, stand_in_srun):
    options = SlurmOptions(partition="gpu", time="02:00:00", gpus=1, cpus=4, mem="16G", array_parallelism=8,
                           account="proj", setup=["module load cuda"], additional={"exclusive": True})
    executor = slurm.make_executor("slurm", tmp_path, options)
    script = executor._make_submission_file_text("python -m job", "uid")
    for line in ("#SBATCH --partition=gpu", "#SBATCH --time=120", "#SBATCH --gpus-per-node=1",
                 "#SBATCH --cpus-per-task=4", "#SBATCH --mem=16G", "#SBATCH --account=proj",
                 "#SBATCH --signal=USR2@120", "#SBATCH --exclusive", "module load cuda"):
        assert line in script, f"{line!r} missing from:\n{script}"
    assert executor.parameters["array_parallelism"] == 8
    assert executor.max_num_timeout == 3


def test_a_data_parallel_run_asks_for_its_tasks_and_gpus_on_one_node(tmp_path: Path, stand_in_srun):
    executor = slurm.make_executor("slurm", tmp_path, SlurmOptions(gpus=1, processes_per_run=4))
    script = executor._make_submission_file_text("python -m job", "uid")
    for line in ("#SBATCH --ntasks-per-node=4", "#SBATCH --gpus-per-node=4", "#SBATCH --nodes=1"):
        assert line in script, f"{line!r} missing from:\n{script}"


DDP_KEYS = {"world_size", "rank_step_time_s", "rank_selection_comm_s", "selection_comm_share"}


def test_submitit_local_runs_a_sweep_run_on_two_processes(tmp_path: Path, keep_torch_threads):
    """processes_per_run: 2 makes each run one job of two tasks that join one gloo group; the
    run makes the decisions of a one-process run, and a second sweep finds it done."""
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "ddp-sweep", "seeds": [0],
        "base": {"dataset": "synthetic", "model": "fcnet16", "epochs": 3, "batch_size": 4, "learning_rate": 0.01,
                 "num_threads": 1, "strategy": "selective_backprop"},
        "slurm": {"time": 10, "processes_per_run": 2}}))
    out = tmp_path / "out"
    plan = plan_sweep(spec, out)
    lines: list[str] = []
    report = run_sweep(plan, executor="submitit-local", workers=1, echo=lines.append)
    assert [o.status for o in report.outcomes] == ["completed", "completed"], lines   # and the archetype twin
    run = next(r for r in plan.runs if r.config.strategy == "selective_backprop")
    rows = RunStore(out / run.name).read_metrics()
    assert [r["world_size"] for r in rows] == [2, 2, 2] and all(len(r["rank_step_time_s"]) == 2 for r in rows)
    reference = train(run.config, out=tmp_path / "ref").history
    counts = ("steps", "samples_scored", "samples_trained", "accepted", "buffered")
    assert [{k: r[k] for k in counts} for r in rows] == [{k: r[k] for k in counts} for r in reference]
    assert [r["test_accuracy"] for r in rows] == pytest.approx([r["test_accuracy"] for r in reference], abs=1e-4)
    again = run_sweep(plan_sweep(spec, out), executor="submitit-local", workers=1, echo=lines.append)
    assert not again.outcomes and lines[-1] == "nothing to run", lines


def preempt_when_running(run_dir: Path, lock: Path, send) -> None:
    """Once the run has two epochs on disk, send the preemption signal to the process running it."""
    wait_until(lambda: len(RunStore(run_dir).read_metrics()) >= 2, 180, f"two epochs in {run_dir.name}")
    send(lock_holder(lock)["pid"])


def check_runs(plan, out: Path, tmp_path: Path, preempted) -> None:
    for run in plan.runs:
        path = out / run.name
        assert RunStore(path).read_summary()["status"] == "completed"
        assert (path / "train.log").read_text().count("end: completed") == 1
        reference = train(run.config, out=tmp_path / "ref" / run.name)
        assert deterministic(RunStore(path).read_metrics()) == deterministic(reference.history), run.name
    assert "resume from epoch" in (out / preempted.name / "train.log").read_text()
    assert "Caught signal SIGUSR2" in (out / "logs" / f"{preempted.name}.log").read_text()


def test_submitit_local_preempted_job_requeues_and_resumes(tmp_path: Path, keep_torch_threads):
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    out = tmp_path / "out"
    plan = plan_sweep(spec, out)
    first = plan.runs[0]
    lines: list[str] = []
    reports = []
    sweep = threading.Thread(target=lambda: reports.append(
        run_sweep(plan, executor="submitit-local", workers=2, echo=lines.append)))
    sweep.start()
    preempt_when_running(out / first.name, out / ".locks" / f"{first.run_id}.lock",
                         lambda pid: os.kill(pid, signal.SIGUSR2))
    sweep.join(timeout=300)
    assert reports, lines
    outcomes = {o.name: o for o in reports[0].outcomes}
    assert [outcomes[r.name].status for r in plan.runs] == ["completed", "completed"], lines
    assert outcomes[first.name].resumed_from >= 1
    check_runs(plan, out, tmp_path, first)


# ----------------------------------------------------------------------------- real Slurm
SLURM_CONF = """ClusterName=assisttest
SlurmctldHost={host}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
StateSaveLocation={dir}/state
SlurmdSpoolDir={dir}/spool
SlurmctldPidFile={dir}/slurmctld.pid
SlurmdPidFile={dir}/slurmd.pid
SlurmctldLogFile={dir}/slurmctld.log
SlurmdLogFile={dir}/slurmd.log
SlurmctldPort={port}
SlurmdPort={port2}
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
NodeName={host} CPUs={cpus} RealMemory=4000 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def munge_works() -> bool:
    try:
        cred = subprocess.run(["munge", "-n"], capture_output=True, timeout=10, check=True).stdout
        return subprocess.run(["unmunge"], input=cred, capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@pytest.fixture
def local_slurm(tmp_path_factory, monkeypatch):
    """A one-node Slurm on this machine, with its own config, state and ports."""
    if not os.environ.get("ASSIST_TEST_SLURM"):
        pytest.skip("set ASSIST_TEST_SLURM=1 to test against a real local Slurm (root, slurm-wlm, munge)")
    assert os.geteuid() == 0 and shutil.which("slurmctld") and shutil.which("munged"), \
        "ASSIST_TEST_SLURM=1 needs root and the slurm-wlm and munge packages"
    started_munge = not munge_works()
    if started_munge:
        Path("/run/munge").mkdir(exist_ok=True)
        subprocess.run(["chown", "-R", "munge:munge", "/run/munge", "/var/log/munge", "/var/lib/munge", "/etc/munge"],
                       check=True)
        subprocess.run(["su", "-s", "/bin/sh", "munge", "-c", "munged"], check=True)
        wait_until(munge_works, 20, "munged")
    work = tmp_path_factory.mktemp("slurm")
    for sub in ("state", "spool"):
        (work / sub).mkdir()
    conf = work / "slurm.conf"
    conf.write_text(SLURM_CONF.format(host=socket.gethostname(), dir=work, port=free_port(), port2=free_port(),
                                      cpus=os.cpu_count() or 1))
    monkeypatch.setenv("SLURM_CONF", str(conf))
    subprocess.run(["slurmctld", "-f", str(conf)], check=True)
    subprocess.run(["slurmd", "-f", str(conf)], check=True)
    try:
        wait_until(lambda: "idle" in subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True,
                                                    text=True).stdout, 60, "the Slurm node to be idle")
        yield conf
    finally:
        subprocess.run(["scancel", "--user=root"], capture_output=True)
        pid_files = [work / "slurmd.pid", work / "slurmctld.pid"]
        pid_files += [Path("/run/munge/munged.pid")] if started_munge else []
        for pid_file in pid_files:
            pid = pid_file.read_text().strip() if pid_file.is_file() else ""
            if pid:
                try:
                    os.kill(int(pid), signal.SIGTERM)
                except ProcessLookupError:
                    pass


@pytest.mark.slow
def test_real_slurm_array_job_preempted_requeues_and_resumes(local_slurm, tmp_path: Path, keep_torch_threads):
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    out = tmp_path / "out"
    plan = plan_sweep(spec, out)
    report = run_sweep(plan, executor="slurm", echo=lambda line: None)
    assert len(report.submitted) == 2 and all("_" in job for job in report.submitted)  # one array job
    first = plan.runs[0]
    job = report.submitted[0]

    def preempt(pid: int) -> None:
        subprocess.run(["scancel", "--signal=USR2", job], check=True)
        # Slurm holds a requeued job back for a while; let it start again at once.
        wait_until(lambda: subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True,
                                          text=True).stdout.strip() == "PENDING", 60, "the requeue")
        subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], check=True)

    preempt_when_running(out / first.name, out / ".locks" / f"{first.run_id}.lock", preempt)
    try:
        wait_until(lambda: all(RunStore(out / r.name).finished for r in plan.runs), 300, "both runs to finish")
    except AssertionError:
        queue = subprocess.run(["scontrol", "show", "job"], capture_output=True, text=True).stdout
        logs = "".join(p.read_text() for p in sorted((out / "logs").glob("*.log")))
        ctld = (local_slurm.parent / "slurmctld.log").read_text()[-3000:]
        raise AssertionError(f"runs unfinished\n{queue}\n{logs}\n{ctld}") from None
    check_runs(plan, out, tmp_path, first)
