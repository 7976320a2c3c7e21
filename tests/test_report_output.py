"""`assist report` end to end: exit codes, files, figures, the HTML and Markdown documents."""

import re
import xml.etree.ElementTree as ET
from html import escape

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from assist.report import cli_report, load_runs, report_command
from assist.report.figures import ARCHETYPE_COLOUR, Line, add_derived, colour_map
from assist.report.synthetic import corrupt_line, generate_runs, make_failed, make_incomplete

VARIANTS = ("archetype", "epochwise", "batchwise")
KINDS = ("epoch", "time", "cost", "accumulation")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One html report over 1 group x 3 strategies x 2 seeds, one run cut short and one
    corrupt line; shared by the tests below (drawing figures is the slow part)."""
    root = tmp_path_factory.mktemp("report")
    paths = generate_runs(root / "runs", variants=VARIANTS, seeds=(0, 1), epochs=4,
                          generator=torch.Generator().manual_seed(5))
    make_incomplete(paths[3], keep_epochs=2)  # epochwise seed 1
    corrupt_line(paths[4], 2)  # batchwise seed 0
    out = root / "out"
    return root, out, cli_report(root / "runs", out, "html", progress=False)


def test_html_report_exit_code_files_and_warnings(built, capsys):
    root, out, code = built
    assert code == 0
    for name in ("report.html", "comparison.csv", "runs.csv", "epochs.csv"):
        assert (out / name).stat().st_size > 200
    html = (out / "report.html").read_text()
    assert "http://" not in html and "https://" not in html and "<script" not in html
    assert html.count('class="report-table comparison"') == 2  # the table in two parts
    assert html.count('class="report-table cost"') == 1
    assert html.count('class="report-table appendix"') == 1
    assert html.count("data:image/png;base64,") == len(list((out / "figures").glob("*.png"))) == 4
    assert "incomplete at epoch 2/4" in html and "metrics.jsonl:2" in html
    assert html.count("<details>") >= 6  # one config per run, collapsed


def _pixels_near(png, hex_colour, tolerance=40):
    with Image.open(png) as image:
        pixels = np.asarray(image.convert("RGB"), dtype=int)
    target = np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(pixels - target).sum(axis=2) < tolerance).sum())


def test_figures_written_as_png_and_svg(built):
    root, out, _ = built
    colours = colour_map(load_runs(root / "runs").runs["label"])
    for kind in KINDS:
        png, svg = out / "figures" / f"g01_{kind}.png", out / "figures" / f"g01_{kind}.svg"
        assert png.stat().st_size > 10_000 and svg.stat().st_size > 15_000  # empty axes: ~7 kB
        with Image.open(png) as image:
            assert image.format == "PNG" and image.width >= 1000 and image.height >= 250
        ET.parse(svg)  # well-formed XML
        drawn = [l for l in colours if kind != "accumulation" or l.startswith("batchwise")]
        for label in drawn:  # every strategy's curves are on the canvas, in its colour
            assert _pixels_near(png, colours[label]) > 200, (kind, label)


def test_one_colour_per_strategy_in_every_figure(built):
    root, out, _ = built
    colours = colour_map(load_runs(root / "runs").runs["label"])
    assert colours["archetype"] == ARCHETYPE_COLOUR
    assert len(set(colours.values())) == len(colours) == 3
    for kind in ("epoch", "time", "cost"):
        svg = (out / "figures" / f"g01_{kind}.svg").read_text()
        for label, colour in colours.items():
            assert label in svg  # legend entry (text kept as text)
            assert colour.lower() in svg.lower()
    acc = (out / "figures" / "g01_accumulation.svg").read_text()
    assert "batchwise (hard, raw batch 64)" in acc and "epochwise" not in acc  # only runs with data
    # The mapping depends on the labels only, not on the order they are met.
    assert colour_map(sorted(colours, reverse=True)) == colours


def test_axes_are_labelled_with_units(built):
    _, out, _ = built
    svg = {k: (out / "figures" / f"g01_{k}.svg").read_text() for k in KINDS}
    assert "accuracy (fraction correct)" in svg["epoch"] and "cross-entropy loss (nats)" in svg["epoch"]
    assert re.search(r"wall-clock time \((s|min|h),", svg["time"])
    assert "samples scored + trained" in svg["cost"]
    assert "trained ÷ scored" in svg["accumulation"] and "raw batches per trained batch" in svg["accumulation"].lower()


def test_markdown_and_csv_formats(built, tmp_path):
    root, _, _ = built
    assert cli_report(root / "runs", tmp_path / "md", "md", progress=False) == 0
    text = (tmp_path / "md" / "report.md").read_text()
    links = re.findall(r"\]\((figures/[^)]+\.png)\)", text)
    assert len(links) == 4 and all((tmp_path / "md" / link).is_file() for link in links)
    assert "| Strategy | Status | n | Accuracy Train |" in text
    assert cli_report(root / "runs", tmp_path / "csv", "csv", progress=False) == 0
    assert not (tmp_path / "csv" / "figures").exists()
    comparison = (tmp_path / "csv" / "comparison.csv").read_text().splitlines()
    assert comparison[0].startswith("group,group_title,strategy,status,n,seeds,note")
    assert len(comparison) == 1 + 4  # 3 completed variants + the incomplete run


def test_error_exit_codes_and_messages(tmp_path, capsys):
    assert cli_report(tmp_path, tmp_path / "out", "html") == 1
    err = capsys.readouterr().err
    assert err.startswith("assist report: error: no runs found in") and err.count("\n") == 1
    assert cli_report(tmp_path / "missing") == 1
    assert "does not exist" in capsys.readouterr().err
    generate_runs(tmp_path / "runs", variants=("archetype",), seeds=(0,), epochs=2,
                  generator=torch.Generator().manual_seed(0))
    assert cli_report(tmp_path / "runs", fmt="pdf") == 2
    assert "--format must be one of html, md, csv" in capsys.readouterr().err
    assert cli_report(tmp_path / "runs", tmp_path / "o", "csv", group_by="modle") == 2
    assert "--group-by key 'modle'" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert cli_report(tmp_path / "runs", tmp_path / "file", "csv") == 2
    assert "not a directory" in capsys.readouterr().err


def test_click_command(tmp_path):
    generate_runs(tmp_path / "runs", variants=("archetype", "batchwise"), seeds=(0,), epochs=2,
                  generator=torch.Generator().manual_seed(0))
    runner = CliRunner()
    result = runner.invoke(report_command, [str(tmp_path / "runs"), "--format", "csv",
                                            "--group-by", "dataset,model"])
    assert result.exit_code == 0, result.output
    assert "| archetype | completed | 1 |" in result.output
    assert (tmp_path / "runs" / "report" / "runs.csv").is_file()  # default --out
    result = runner.invoke(report_command, [str(tmp_path / "empty")])
    assert result.exit_code == 1 and "Traceback" not in result.output


def test_runs_without_any_epoch_are_listed_not_plotted(tmp_path, capsys):
    (started, crashed) = generate_runs(tmp_path / "runs", variants=("archetype", "batchwise"),
                                       seeds=(0,), epochs=2, generator=torch.Generator().manual_seed(1))
    make_incomplete(started, keep_epochs=0, truncated_tail=False)
    make_failed(crashed, at_epoch=0, reason="out of memory")
    assert cli_report(tmp_path / "runs", tmp_path / "out", "html", progress=False) == 0
    printed = capsys.readouterr().out
    assert "| archetype | incomplete at epoch 0/2 | 1 | – |" in printed
    assert "| batchwise (hard, raw batch 64) | failed at epoch 0/2 | 1 | – |" in printed
    assert "out of memory" in printed
    assert list((tmp_path / "out" / "figures").iterdir()) == []


def test_seed_band_statistics_align_epochs():
    # Two seeds, one of which skipped the train evaluation at epoch 2 and stopped early:
    # the mean and band per epoch use the seeds that have a value there.
    a = pd.DataFrame({"epoch": [1, 2, 3], "train_accuracy": [0.5, None, 0.9], "wall_clock_s": [1.0, 2.0, 3.0]})
    b = pd.DataFrame({"epoch": [1, 2], "train_accuracy": [0.7, 0.8], "wall_clock_s": [1.5, float("inf")]})
    line = Line("archetype", [add_derived(a), add_derived(b)], True)
    epochs, _, _ = line.arrays["epoch"]
    mean, low, high = line.arrays["train_accuracy"]
    assert epochs.tolist() == [1, 2, 3]
    assert mean.tolist() == pytest.approx([0.6, 0.8, 0.9])
    assert low.tolist() == pytest.approx([0.5, 0.8, 0.9]) and high.tolist() == pytest.approx([0.7, 0.8, 0.9])
    assert line.arrays["wall_clock_s"][0].tolist() == pytest.approx([1.25, 2.0, 3.0])  # inf left out


def test_worker_processes_draw_the_same_bytes(tmp_path, monkeypatch):
    # Figures reuse one matplotlib figure per process; nothing may leak from one group's
    # figure into the next. Serial drawing (g03 drawn on a template used twice before) and
    # parallel drawing (chunks of two: g03 drawn on a fresh template) must give the same bytes.
    import assist.report.build as build
    import assist.report.drawing as drawing
    paths = generate_runs(tmp_path / "runs", groups=3, variants=("archetype", "batchwise"),
                          seeds=(0, 1), epochs=2, generator=torch.Generator().manual_seed(4))
    rows = (paths[0] / "metrics.jsonl").read_text().replace('"train_loss_q90": ', '"train_loss_q90": 0.0, "x": ')
    (paths[0] / "metrics.jsonl").write_text(rows)  # a zero loss: that panel goes linear
    runset = load_runs(tmp_path / "runs")
    monkeypatch.setattr(build, "PARALLEL_MIN_JOBS", 2)
    monkeypatch.setattr(drawing, "_TEMPLATES", {})
    build.build_report(runset, tmp_path / "parallel", workers=2, formats=("svg",))
    monkeypatch.setattr(drawing, "_TEMPLATES", {})
    build.build_report(runset, tmp_path / "serial", workers=1, formats=("svg",))
    names = sorted(p.name for p in (tmp_path / "serial" / "figures").iterdir())
    assert len(names) == 12
    for name in names:
        serial = (tmp_path / "serial" / "figures" / name).read_bytes()
        assert serial == (tmp_path / "parallel" / "figures" / name).read_bytes(), name


def test_terminal_echo_fits_120_columns(tmp_path, capsys):
    paths = generate_runs(tmp_path / "runs", variants=VARIANTS, seeds=(0, 1, 2), epochs=3,
                          generator=torch.Generator().manual_seed(7))
    make_incomplete(paths[3], keep_epochs=1)
    assert cli_report(tmp_path / "runs", tmp_path / "out", "csv", progress=False) == 0
    printed = capsys.readouterr().out
    table_lines = [line for line in printed.splitlines() if line.startswith("|")]
    assert table_lines and max(len(line) for line in table_lines) <= 120
    for title in ("Accuracy", "Mean loss", "Q=0.9 loss", "Worst loss"):
        assert f"\n{title}\n" in printed
    assert (tmp_path / "out" / "cost.csv").stat().st_size > 50


def test_legends_are_readable_at_full_size_and_never_overlap():
    """Legend entries at 10 pt (about 12 px at the figures' 90 dpi), in two columns when a
    label is long, and no entry runs into another."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from assist.report.drawing import LEGEND_PT, _place_legend

    for label in ("archetype", "random subset (strategy_options=fraction=0.1) [collapsed]"):
        fig = Figure(figsize=(12, 4), dpi=90)
        FigureCanvasAgg(fig)
        entries = [(f"━━ {label} {i}", "#000000") for i in range(6)]
        _place_legend(fig, entries, 4.0)
        renderer = fig.canvas.get_renderer()
        boxes = [t.get_window_extent(renderer) for t in fig.texts if t.get_gid() == "legend"]
        assert len(boxes) == 6 and LEGEND_PT >= 10
        assert all(t.get_fontsize() >= 10 for t in fig.texts if t.get_gid() == "legend")
        assert all(box.x1 <= fig.bbox.width for box in boxes)
        for i, a in enumerate(boxes):
            for b in boxes[i + 1:]:
                assert not a.overlaps(b), label


def test_a_long_title_wraps_inside_the_figure(tmp_path):
    """A group label longer than the figure is wide wraps onto more lines and stays clear of
    both edges; the figure is as wide as the report's column (report/html.py)."""
    from assist.report.drawing import FIGURE_PX, _TEMPLATES, render_panels

    paths = generate_runs(tmp_path / "runs", variants=("archetype",), seeds=(0,), epochs=3,
                          generator=torch.Generator().manual_seed(1))
    epochs = add_derived(load_runs(tmp_path / "runs").epochs)
    lines = [Line("archetype", [epochs.sort_values("epoch")], True)]
    title = "g01: " + ", ".join(f"some_key_{i}=value_{i}" for i in range(24))
    assert len(title) > 2 * 150
    made = render_panels(lines, colour_map(["archetype"]), "epoch", title, stem=tmp_path / "long", formats=("png",))
    assert made is not None and Image.open(made.files["png"]).size[0] == FIGURE_PX
    fig, _ = next(iter(_TEMPLATES.values()))
    renderer = fig.canvas.get_renderer()
    suptitle = fig._suptitle
    assert suptitle.get_text().count("\n") >= 2 and suptitle.get_text().replace("\n", " ").startswith(title)
    box = suptitle.get_window_extent(renderer)
    assert box.x0 > 0 and box.x1 < fig.bbox.width and box.y1 < fig.bbox.height
    # the panels start below the title's last line
    top_of_panels = max(ax.title.get_window_extent(renderer).y1 for ax in fig.axes if ax.get_visible())
    assert top_of_panels < box.y0


def test_each_group_opens_with_the_compare_verdict(tmp_path, capsys):
    """Per strategy, the line `assist compare` prints: test accuracy against the twin's, and
    sample passes and training time as multiples of it, run by run and averaged over seeds,
    at the top of each group in the terminal, the Markdown and the HTML."""
    from assist.report.cost import run_costs
    from assist.report.grouping import find_twins

    paths = generate_runs(tmp_path / "runs", variants=("archetype", "batchwise"), seeds=(0, 1, 2), epochs=3,
                          generator=torch.Generator().manual_seed(8))
    make_failed(paths[5], at_epoch=1)   # batchwise seed 2: left out of its verdict
    rs = load_runs(tmp_path / "runs")
    twins, costs = find_twins(rs), run_costs(rs)
    strategic = sorted(r for r in rs.runs.index if rs.runs.at[r, "strategy"] == "batchwise"
                       and rs.runs.at[r, "status"] == "completed")
    assert len(strategic) == 2
    acc = rs.runs["final_test_accuracy"]
    mine, theirs = np.mean([acc[r] for r in strategic]), np.mean([acc[twins[r]] for r in strategic])
    passes = np.mean([costs.at[r, "passes"] / costs.at[twins[r], "passes"] for r in strategic])
    hours = np.mean([costs.at[r, "time_s"] / costs.at[twins[r], "time_s"] for r in strategic])
    expected = (f"batchwise (hard, raw batch 64): test accuracy {100 * mine:.2f}% against the archetype's "
                f"{100 * theirs:.2f}% ({100 * (mine - theirs):+.2f} pt), at {passes:.2f}x its sample passes "
                f"and {hours:.2f}x its training time (mean over 2 seeds)")
    assert passes > 1.0   # batchwise scores every sample and trains some: more passes than its twin

    assert cli_report(tmp_path / "runs", tmp_path / "md", "md", progress=False) == 0
    printed = capsys.readouterr().out
    assert printed.splitlines()[2] == expected   # under the group's heading, before its tables
    markdown = (tmp_path / "md" / "report.md").read_text()
    assert f"## g01: dataset=mnist, model=lenet\n\n- {expected}\n\n<details>" in markdown
    assert cli_report(tmp_path / "runs", tmp_path / "html", "html", progress=False) == 0
    page = (tmp_path / "html" / "report.html").read_text()
    heading = page.index('<section class="group" id="g01">')
    assert heading < page.index(f"<ul class='verdict'><li>{escape(expected)}</li></ul>") < page.index("<table", heading)


def test_a_strategy_without_a_completed_twin_says_so(tmp_path):
    from assist.report.build import build_report

    paths = generate_runs(tmp_path / "runs", variants=("archetype", "batchwise"), seeds=(0,), epochs=2,
                          generator=torch.Generator().manual_seed(9))
    make_failed(paths[0], at_epoch=1)   # the archetype
    report = build_report(load_runs(tmp_path / "runs"), figures=False)
    assert report.groups[0].verdicts == ["batchwise (hard, raw batch 64): no completed archetype twin to compare with"]
