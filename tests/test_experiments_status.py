"""`assist status` finds the runs `assist report` finds, at any depth, grouped by sweep."""

from pathlib import Path

import pytest
import torch

from assist.cli import main
from assist.experiments.store import SweepDir, states_under
from assist.report import load_runs
from assist.report.synthetic import generate_runs, make_failed


@pytest.fixture
def runs(tmp_path) -> Path:
    """A runs folder as a user's fills up: a sweep (one run never started), a compare
    folder, and a run of `assist train` directly inside."""
    root = tmp_path / "runs"
    gen = torch.Generator().manual_seed(3)
    sweep = root / "my-sweep"
    generate_runs(sweep / "tmp", variants=("archetype", "batchwise"), seeds=(0,), epochs=2, generator=gen)
    entries = {}
    for path in sorted((sweep / "tmp").rglob("config.yaml")):  # flat, named <name>-<run_id> as a sweep does
        target = sweep / f"{path.parent.name}-{len(entries):04x}"
        path.parent.rename(target)
        entries[target.name.rsplit("-", 1)[1]] = {"name": target.name}
    entries["beef"] = {"name": "never-started-beef"}
    for leftover in sorted((sweep / "tmp").rglob("*"), reverse=True):
        leftover.rmdir()
    (sweep / "tmp").rmdir()
    SweepDir(sweep).record("tiny", entries)
    generate_runs(root / "compare-20250101-120000", variants=("archetype", "epochwise"), seeds=(0,),
                  epochs=2, generator=gen)
    plain = generate_runs(root / "x", variants=("archetype",), seeds=(5,), epochs=2, generator=gen)[0]
    plain.rename(root / "digits-fcnet100-archetype-seed5-0123456789")
    make_failed(root / "digits-fcnet100-archetype-seed5-0123456789", 1)
    return root


def test_status_and_report_see_the_same_runs(runs, capsys):
    report_paths = set(load_runs(runs).runs["path"])
    grouped = states_under(runs)
    found = {str(s.path) for _, states in grouped for s in states if s.state != "missing"}
    assert found == report_paths and len(found) == 5
    folders = [folder for folder, _ in grouped]
    assert runs / "my-sweep" in folders and runs in folders
    missing = [s for _, states in grouped for s in states if s.state == "missing"]
    assert [s.name for s in missing] == ["never-started-beef"]

    main(["status", str(runs)])
    out = capsys.readouterr().out
    assert f"== {runs / 'my-sweep'} (sweep) ==" in out and "never-started-beef" in out
    assert f"== {runs} (runs) ==" in out
    assert "all: 6 runs in 3 folders: 4 done, 0 collapsed, 0 running, 1 failed, 0 incomplete, 1 missing" in out
    # --problems hides the done runs but keeps the failed and the missing one
    main(["status", str(runs), "--problems"])
    out = capsys.readouterr().out
    assert "never-started-beef" in out and "failed" in out and "done       2/2" not in out


def test_a_sweep_directory_alone_reads_as_before(runs, capsys):
    main(["status", str(runs / "my-sweep")])
    out = capsys.readouterr().out
    assert "==" not in out and out.strip().endswith("3 runs: 2 done, 0 collapsed, 0 running, 0 failed, 0 incomplete, 1 missing")


def test_one_run_directory_and_an_empty_folder(runs, tmp_path, capsys):
    main(["status", str(runs / "digits-fcnet100-archetype-seed5-0123456789")])
    assert "1 runs: 0 done, 0 collapsed, 0 running, 1 failed" in capsys.readouterr().out
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as stop:
        main(["status", str(tmp_path / "empty")])
    assert stop.value.code == 1 and "no runs found" in capsys.readouterr().err
