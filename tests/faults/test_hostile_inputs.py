"""Hostile and malformed input: archive bombs, links and escapes in archives, pickles in
checkpoints, YAML alias bombs, and a table of bad command lines. Nothing is executed or
escapes, memory stays bounded, and each bad input is one line naming what is wrong."""

from __future__ import annotations

import io
import os
import pickle
import stat
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

import faults_tally
from assist.cli import main
from assist.data.archives import ArchiveLimits, iter_archive, safe_extract
from assist.data.base import DataError

GIB = 2**30


def _zeros_zip(path: Path, total: int, name: str = "train/a/x.png") -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open(name, "w", force_zip64=True) as handle:
            chunk = bytes(1 << 20)
            for _ in range(total >> 20):
                handle.write(chunk)
    return path


def _zeros_tgz(path: Path, total: int, member: int = 8 << 20) -> Path:
    data = bytes(member)
    with tarfile.open(path, "w:gz") as archive:
        for i in range(total // member):
            info = tarfile.TarInfo(f"train/a/{i}.png")
            info.size = member
            archive.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture(scope="module")
def bombs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bombs")
    return {"zip": _zeros_zip(root / "bomb.zip", GIB), "tar.gz": _zeros_tgz(root / "bomb.tar.gz", GIB)}


PEAK_WRAPPER = """
import atexit, sys
def record():
    with open(sys.argv[1], "w") as out:
        out.write(next(line for line in open("/proc/self/status") if line.startswith("VmHWM")))
atexit.register(record)
from assist.cli import main
main(sys.argv[2:])
"""


def _train_peak_mb(dataset: str, cwd: Path, env: dict | None = None) -> tuple[int, str, float]:
    """``assist train`` on ``dataset`` in a child process: exit code, stderr, and the child's
    own peak RSS in MB (VmHWM, which starts afresh at exec, unlike ru_maxrss)."""
    record = cwd / "peak.txt"
    done = subprocess.run([sys.executable, "-c", PEAK_WRAPPER, str(record), "train", f"dataset={dataset}",
                           "epochs=1", "--out", str(cwd / "run")], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)
    return done.returncode, done.stderr, int(record.read_text().split()[1]) / 1024


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_archive_bombs_are_refused_with_bounded_memory(bombs, kind, tmp_path):
    bomb = bombs[kind]
    assert bomb.stat().st_size < 2 * 2**20  # about 1 MiB holding 1 GiB
    faults_tally.count("hostile_files")
    started = time.monotonic()
    code, err, peak = _train_peak_mb(f"folder:{bomb}", tmp_path)
    assert code == 2, err
    assert err.strip().startswith(f"assist: error: {bomb}: expands more than 100x"), err
    assert "ASSIST_ARCHIVE_MAX_RATIO" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()
    assert peak < 1200, f"peak memory {peak:.0f} MB while refusing {bomb.name}"
    assert time.monotonic() - started < 60
    faults_tally.peak(f"archive bomb peak RSS, MB ({kind}, 1 GiB in 1 MiB)", peak)


def test_archive_limits_are_configurable(tmp_path, monkeypatch):
    archive = tmp_path / "many.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for i in range(20):
            handle.writestr(f"train/a/{i}.txt", b"x" * 100)
    assert len(list(iter_archive(archive))) == 20
    monkeypatch.setenv("ASSIST_ARCHIVE_MAX_MEMBERS", "10")
    with pytest.raises(DataError, match=r"more than 10 members \(limit ASSIST_ARCHIVE_MAX_MEMBERS\)"):
        list(iter_archive(archive))
    monkeypatch.setenv("ASSIST_ARCHIVE_MAX_MEMBERS", "lots")
    with pytest.raises(DataError, match="ASSIST_ARCHIVE_MAX_MEMBERS='lots' is not a number"):
        list(iter_archive(archive))
    monkeypatch.delenv("ASSIST_ARCHIVE_MAX_MEMBERS")
    monkeypatch.setenv("ASSIST_ARCHIVE_MAX_BYTES", "1K")
    with pytest.raises(DataError, match="expands to more than 1,024 bytes"):
        list(iter_archive(archive))
    # a member bigger than the limits is refused from its declared size, before it is read
    tight = ArchiveLimits(max_bytes=2**20, max_ratio=10**6, ratio_floor=0)
    liar = tmp_path / "liar.zip"
    _zeros_zip(liar, 4 << 20, name="train/a/big.png")
    with pytest.raises(DataError, match="expands to more than 1,048,576 bytes"):
        list(iter_archive(liar, tight))


def test_zips_written_by_writestr_are_plain_files(tmp_path):
    archive = tmp_path / "plain.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("train/a/x.txt", b"hello")                       # mode 0o600, no file-type bits
        info = zipfile.ZipInfo("train/a/y.txt")
        info.external_attr = (stat.S_IFREG | 0o644) << 16
        handle.writestr(info, b"world")
    assert dict(iter_archive(archive)) == {("train", "a", "x.txt"): b"hello", ("train", "a", "y.txt"): b"world"}


@pytest.mark.parametrize("mode, reason", [(stat.S_IFLNK | 0o777, "link or special file"),
                                          (stat.S_IFCHR | 0o600, "link or special file"),
                                          (stat.S_IFIFO | 0o600, "link or special file")])
def test_links_and_devices_in_zips_are_refused(tmp_path, mode, reason):
    faults_tally.count("hostile_files")
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        info = zipfile.ZipInfo("train/a/evil")
        info.create_system = 3
        info.external_attr = mode << 16
        handle.writestr(info, b"/etc/passwd")
    with pytest.raises(DataError, match=reason):
        list(iter_archive(archive))
    with pytest.raises(DataError, match=reason):
        safe_extract(archive, tmp_path / "out")
    assert not list((tmp_path / "out").rglob("evil"))


@pytest.mark.parametrize("name", ["../escape.txt", "/tmp/escape-abs.txt", "train/../../escape.txt", "C:/escape.txt"])
def test_escaping_members_never_leave_the_folder(tmp_path, name):
    faults_tally.count("hostile_files")
    for kind in ("zip", "tar"):
        archive = tmp_path / f"evil.{kind}"
        if kind == "zip":
            with zipfile.ZipFile(archive, "w") as handle:
                handle.writestr(name, b"pwned")
        else:
            with tarfile.open(archive, "w") as handle:
                info = tarfile.TarInfo(name)
                info.size = 5
                handle.addfile(info, io.BytesIO(b"pwned"))
        dest = tmp_path / "deep" / "dest"
        with pytest.raises(DataError, match="unsafe archive member"):
            safe_extract(archive, dest)
        written = [p for p in tmp_path.rglob("*escape*")] + list(Path("/tmp").glob("escape-abs.txt"))
        if written:
            faults_tally.count("hostile_escaped")
        assert not written


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_damaged_zip_is_one_line(tmp_path):
    faults_tally.count("hostile_files")
    archive = tmp_path / "damaged.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as handle:
        handle.writestr("train/a/x.png", bytes(range(256)) * 4000)
    data = bytearray(archive.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 64] = bytes(64)  # inside the compressed stream
    archive.write_bytes(bytes(data))
    with pytest.raises(DataError, match="damaged.zip: cannot read zip archive"):
        list(iter_archive(archive))



def test_a_pickle_payload_in_a_checkpoint_is_never_run(tmp_path, capsys, keep_torch_threads):
    from assist.api import train

    run = tmp_path / "run"

    class Crash(Exception):
        pass

    from assist.events import Callback

    class CrashAfter(Callback):
        def on_epoch_end(self, trainer, *, epoch, **info):
            if epoch == 2:
                raise Crash

    config = {"dataset": "synthetic", "model": "fcnet16", "epochs": 4, "num_threads": 1}
    with pytest.raises(Crash):
        train(config, out=run, callbacks=[CrashAfter()])
    marker = tmp_path / "executed"
    for path in sorted((run / "checkpoints").glob("epoch-*.pt")):
        faults_tally.count("hostile_files")
        path.write_bytes(pickle.dumps({"model": _Payload(marker)}))
        path.with_name(path.name + ".sha256").unlink()
    with pytest.warns(UserWarning, match="not usable"):
        with pytest.raises(SystemExit) as stop:
            main(["train", *[f"{k}={v}" for k, v in config.items()], "--out", str(run)])
    assert stop.value.code == 2
    assert "no usable checkpoint" in capsys.readouterr().err
    if marker.exists():
        faults_tally.count("hostile_escaped")
    assert not marker.exists()


ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
    f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
    for i in range(8))


def test_yaml_alias_bombs_are_refused_everywhere(tmp_path, capsys):
    from assist.tracking import RunStore

    faults_tally.count("hostile_files", 4)
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(ALIAS_BOMB)
    assert bomb.stat().st_size < 2000
    places = {
        "--config": ["train", "--config", str(bomb), "--out", str(tmp_path / "r1")],
        "override": ["train", f"dataset={'[' + ','.join(['*a'] * 3) + ']'}", "--out", str(tmp_path / "r2")],
        "sweep spec": ["sweep", str(bomb), "--out", str(tmp_path / "s"), "--dry-run"],
    }
    for where, args in places.items():
        started = time.monotonic()
        with pytest.raises(SystemExit) as stop:
            main(args)
        err = capsys.readouterr().err
        assert stop.value.code == 2, (where, err)
        assert time.monotonic() - started < 5, where
        assert err.startswith("assist: error:") and "Traceback" not in err, (where, err)
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(ALIAS_BOMB)
    (run / "metrics.jsonl").write_text("")
    started = time.monotonic()
    assert not RunStore(run).is_run()
    with pytest.raises(Exception, match="alias|unreadable"):
        RunStore(run).read_config()
    assert time.monotonic() - started < 5


# A table of bad command lines: each must give exit 2, one line naming what is wrong, and no
# run directory.
BAD_INPUTS = [
    (["epochs=0"], "epochs"), (["epochs=-3"], "epochs"), (["epochs=two"], "epochs"), (["epochs.x=1"], "epochs"),
    (["batch_size=true"], "batch_size"), (["batch_size=0"], "batch_size"), (["learning_rate=.inf"], "learning_rate"),
    (["learning_rate=.nan"], "learning_rate"), (["gamma=.inf"], "gamma"), (["rng_seed=-1"], "rng_seed"),
    (["rng_seed=1e23"], "rng_seed"), (["rng_seed=true"], "rng_seed"), (["model=resnet9000"], "resnet9000"),
    (["dataset=nope"], "nope"), (["strategy=magic"], "magic"), (["optimizer=adam2"], "adam2"),
    (["selector=top_q", "select_q=1.5"], "select_q"), (["frobnicate=1"], "frobnicate"), (["epochs"], "epochs"),
    (["=3"], "="), (["device=tpu"], "tpu"), (["trackers=[nope]"], "nope"), (["lr_scheduler=sine"], "sine"),
    (["label_smoothing=1.5"], "label_smoothing"), (["dataset=folder:/no/such/dir"], "/no/such/dir"),
    (["--config", "/no/such.yaml"], "/no/such.yaml"), (["--config", "/"], "is a directory"),
    (["dataset=folder:"], "folder:PATH"), (["dataset=folder: "], "folder:PATH"),
    (["device=meta"], "'meta' cannot train"), (["device=xla"], "'xla' cannot train"), (["device=cpu:99"], "cpu:99"),
    (["device=cuda:7"], "cuda:7"),
]


@pytest.mark.parametrize("args, named", BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_command_lines_are_one_clear_line(tmp_path, capsys, args, named):
    faults_tally.count("bad_inputs")
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as stop:
        main(["train", "dataset=synthetic", "model=fcnet16", *args, "--out", str(out)])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert stop.value.code == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert named in lines[0], err
    assert not out.exists()
    faults_tally.count("bad_inputs_clean")


def test_slurm_without_srun_is_one_line_and_writes_nothing(tmp_path, capsys, monkeypatch):
    import shutil

    if shutil.which("srun"):
        pytest.skip("this machine has Slurm: the missing-srun path cannot be shown here")
    faults_tally.count("bad_inputs")
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: s\nbase: {dataset: synthetic, model: fcnet16, epochs: 1}\nexperiments: {none: {}}\nseeds: [0]\n")
    with pytest.raises(SystemExit) as stop:
        main(["sweep", str(spec), "--out", str(tmp_path / "out"), "--executor", "slurm"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1 and "needs Slurm's srun" in err
    assert not (tmp_path / "out").exists()
    faults_tally.count("bad_inputs_clean")


def test_yaml_that_is_deep_broken_huge_or_long_is_one_line(tmp_path, capsys):
    """Nesting deeper than the parser's recursion, a syntax error, a file over the size limit
    and a 200,000-character value: each one line naming the file (line and column for the
    syntax error), exit 2, nothing written."""
    deep = "[" * 3000 + "]" * 3000
    files = {"deep": f"epochs: {deep}\n", "broken": "epochs: 3\nbatch_size: [1\n",
             "huge": "epochs: 3\n#" + "x" * (1 << 21) + "\n", "long": "epochs: " + "x" * 200_000 + "\n"}
    expected = {"deep": "nested too deeply", "broken": "line 3, column 1: expected ',' or ']'",
                "huge": "over the 1,048,576 a config file may hold", "long": "... (200,002 characters)"}
    for name, text in files.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(text)
        for args in (["train", "--config", str(path), "--out", str(tmp_path / "r")],
                     ["sweep", str(path), "--out", str(tmp_path / "s"), "--dry-run"]):
            if name == "long" and args[0] == "sweep":
                continue                                # a spec's epochs key is no spec key at all
            with pytest.raises(SystemExit) as stop:
                main(args)
            err = capsys.readouterr().err
            lines = [line for line in err.splitlines() if line.strip()]
            assert stop.value.code == 2 and len(lines) == 1 and "Traceback" not in err, (name, args[0], err)
            assert len(lines[0]) < 300, (name, lines[0][:300])
            if args[0] == "train":
                assert expected[name] in lines[0], (name, lines[0])
        assert not (tmp_path / "r").exists() and not (tmp_path / "s").exists()
    with pytest.raises(SystemExit) as stop:
        main(["train", f"epochs={deep}", "--out", str(tmp_path / "r")])
    assert stop.value.code == 2 and "epochs: the value is nested too deeply" in capsys.readouterr().err


def test_the_report_skips_a_run_whose_config_is_an_alias_bomb(tmp_path, capsys, keep_torch_threads):
    from assist.api import train

    train({"dataset": "synthetic", "model": "fcnet16", "epochs": 1, "batch_size": 8}, out=tmp_path / "runs" / "good")
    bad = tmp_path / "runs" / "bad"
    bad.mkdir()
    (bad / "config.yaml").write_text(ALIAS_BOMB)
    (bad / "metrics.jsonl").write_text("")
    started = time.monotonic()
    from assist.report.command import cli_report

    assert cli_report(tmp_path / "runs", tmp_path / "report", fmt="csv") == 0
    assert time.monotonic() - started < 60
    err = capsys.readouterr().err
    assert "runs/bad: config.yaml is unreadable: its aliases expand" in err, err


@pytest.mark.parametrize("name", ["../evil", "/tmp/abs", "..", "a/b"])
def test_a_spec_name_never_writes_outside_runs(tmp_path, capsys, name, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"name: {name!r}\nbase: {{dataset: synthetic, model: fcnet16, epochs: 1}}\n")
    with pytest.raises(SystemExit) as stop:
        main(["sweep", str(spec)])
    assert stop.value.code == 2 and "is not a plain name" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.yaml"]


@pytest.mark.parametrize("command", ["train", "sweep", "compare"])
def test_an_empty_out_is_refused_not_taken_for_the_default(tmp_path, capsys, command, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = tmp_path / "spec.yaml"
    spec.write_text("base: {dataset: synthetic, model: fcnet16, epochs: 1}\n")
    args = {"train": ["train", "dataset=synthetic", "epochs=1"], "sweep": ["sweep", str(spec)],
            "compare": ["compare", "dataset=synthetic", "epochs=1"]}[command]
    with pytest.raises(SystemExit) as stop:
        main([*args, "--out", ""])
    assert stop.value.code == 2 and "--out: the path is empty" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_a_grid_of_a_million_runs_is_refused_before_it_is_expanded(tmp_path, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_text("base: {dataset: synthetic, model: fcnet16}\n"
                    f"grid: {{rng_seed: {list(range(1000))}, epochs: {list(range(1, 1001))}}}\n")
    started = time.monotonic()
    with pytest.raises(SystemExit) as stop:
        main(["sweep", str(spec), "--dry-run"])
    assert time.monotonic() - started < 10
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "the grid expands to 1,000,000 runs (before twins), over the 10,000" in err


def test_more_threads_than_cores_is_warned_about_and_capped(tmp_path, capsys, keep_torch_threads):
    import os as _os

    import torch

    with pytest.warns(UserWarning, match=rf"num_threads=2000 is more than the {_os.cpu_count()} cores here"):
        main(["train", "dataset=synthetic", "model=fcnet16", "epochs=1", "num_threads=2000",
              "--out", str(tmp_path / "run")])
    assert torch.get_num_threads() <= (_os.cpu_count() or 1)
