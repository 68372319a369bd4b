"""The notebook reproduced through the queue by `python -m cifar_core reproduce`, end to end on
small generated data with one epoch per experiment, and the pieces of its report."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from cifar_core.analysis import report
from cifar_core.jobs import queue, store
from cifar_core.lab import Lab
from cifar_core.errors import LabError
from cifar_core.spec.presets import NOTEBOOK_PRESETS
from cifar_core.testing.procs import cli, wait_for


def test_reproduce_end_to_end(lab_home, small_data, tmp_path):
    done = cli("reproduce", "--data", str(small_data), "--out", str(tmp_path / "rep"), "--epochs", "1", "--seeds", "2",
               timeout=480)
    out = done.stdout
    assert out.splitlines()[0] == f"submitted exp1, exp2, exp3, exp4, exp5 with seeds 0-1 as jobs 1-10 (group 1) on {small_data}"
    assert "started a worker (pid" in out
    for i in range(1, 11):
        name = NOTEBOOK_PRESETS[(i - 1) % 5]
        assert f"#{i} {name}: epoch 1/1 train acc " in out
        # Not necessarily the i-th to finish: on a loaded host `reproduce` may start a second worker
        # before the first registers, and the two finish out of order.
        assert re.search(rf"#{i} {name}: succeeded, test accuracy \d+\.\d% \(\d+/10 finished\)", out)
    md_path, html_path = tmp_path / "rep" / "report.md", tmp_path / "rep" / "report.html"
    assert out.rstrip().endswith(f"report: {md_path}\nhtml:   {html_path}")

    md = md_path.read_text()
    assert md.startswith("# CIFAR-10 notebook, reproduced") and "runs succeeded**" not in md
    intro = md.split("## Summary")[0]
    assert f"Data: `{small_data.name}`." in intro and str(small_data) not in md  # the source by name, not path
    assert "seeds 0, 1." in intro and "recorded in the notebook, not trained here" in intro
    summary = md.split("## Summary")[1].split("\n## ")[0]
    assert "| experiment | runs | epochs | final val acc (lab: mean ± std, min–max) | notebook final | final inside? |" in summary
    assert "| exp5 (Conv + Dropout) | 2 | 1 | " in summary and "| 75.6% |" in summary and "| 73.5% |" in summary
    for name in NOTEBOOK_PRESETS:  # a sentence per experiment, saying it was not the notebook's epochs
        line = next(x for x in summary.splitlines() if x.startswith(f"- **{name}**: "))
        assert "The notebook's final validation accuracy" in line and "the lab's 2 seeds (" in line
        assert "(Trained 1 epoch here against the notebook's" in line
    runs = summary.split("Every run:")[1]
    assert runs.count("| #") == 10 and "| exp5 (Conv + Dropout) | #5 | 196,426 | 1 |" in runs and "| 72.0% (best 73.5%) |" in runs
    for i, name in enumerate(NOTEBOOK_PRESETS, start=1):
        section = md.split(f"\n## {name}: ")[1].split("\n## ")[0]
        assert f"(runs #{i} seed 0 succeeded, #{i + 5} seed 1 succeeded)" in section.splitlines()[0]
        assert 'Model: "' + name + '"' in section and "Total params:" in section  # the network's summary, once
        assert section.count("Total params:") == 1
        assert "- Notebook (recorded in the notebook, not trained here): final validation accuracy" in section
        head = "| epoch | notebook val | lab val (mean) | lab val (min–max) | val difference (pts) | notebook train |"
        assert head in section
        rows = [x for x in section.splitlines() if re.match(r"\| \d+ \| ", x)]
        assert len(rows) == {"exp1": 20, "exp2": 40, "exp3": 10, "exp4": 20, "exp5": 10}[name]  # every notebook epoch
        assert rows[0].count("%") >= 4 and "| – | – | – |" in rows[-1]  # the lab trained epoch 1 only
        assert section.count("diagnosis: Too short to judge.**") == 2  # one epoch cannot show a trend
        assert "The notebook's reading: " in section
    assert "| 2 | 10.0% | – | – | – | – | – | – |" in md  # exp1: epoch 2, the notebook's training accuracy unknown
    final = md.split("## Recommendation for production")[1]
    assert "| rank | experiment | run | test acc |" in final
    assert "**Recommended for production: exp" in final and "*Rule:*" in final
    assert "validated on the test set each epoch" in final  # the presets validate on the test set

    page = html_path.read_text()
    assert page.count("<h2>") == 7 and "<table>" in page
    assert page.count("Plotly.newPlot") == 6  # five comparisons with the notebook and the Pareto front
    assert page.count("notebook, exp4 val (recorded in the notebook, not trained here)") >= 1
    assert len(re.findall(r"plotly\.js v\d", page)) == 1  # plotly.js inlined once
    assert "<script src=" not in page and 'src="https://cdn.plot.ly' not in page  # opens offline

    conn = store.connect()
    states = [r[0] for r in conn.execute("SELECT state FROM jobs ORDER BY id")]
    assert states == ["succeeded"] * 10  # the notebook's curves are never stored as runs
    assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 10
    assert [r[0] for r in conn.execute("SELECT seed FROM runs ORDER BY id")] == [0] * 5 + [1] * 5
    kind = conn.execute("SELECT kind, name FROM groups WHERE id = 1").fetchone()
    assert tuple(kind) == ("reproduce", "notebook reproduction")
    # The worker it started exits once the queue is empty.
    wait_for(lambda: conn.execute("SELECT COUNT(*) FROM workers WHERE stopped_at IS NULL").fetchone()[0] == 0,
             timeout=30, what="the reproduce worker to stop")

    again = cli("report", "--group", "1", "--out", str(tmp_path / "again.md"))
    assert (tmp_path / "again.md").read_text().split("\n", 3)[3] == md.split("\n", 3)[3]  # all but the date line
    assert (tmp_path / "again.html").is_file() and "html:" in again.stdout
    missing = cli("report", "--group", "9", check=False)
    assert missing.returncode == 2 and "error: group 9 has no jobs" in missing.stderr

    timed = cli("report", "--group", "1", "--out", str(tmp_path / "timed.md"), "--reference-epoch", "2.5")
    assert "report:" in timed.stdout
    timed_md = (tmp_path / "timed.md").read_text()
    assert "took 2.5 s on this machine in the same session" in timed_md
    every = timed_md.split("Every run:")[1].split("\n## ")[0]
    header = next(x for x in every.splitlines() if x.startswith("| experiment | run |"))
    cells = [c.strip() for c in header.strip("|").split("|")]
    assert cells[cells.index("s/epoch") + 1] == "× ref epoch"
    per_run = report.summary_table(conn, list(range(1, 11))).set_index("run")["seconds_per_epoch"]
    first = next(x for x in every.splitlines() if x.startswith("| exp1 (Dense 10 relu) | #1 |"))
    shown = [c.strip() for c in first.strip("|").split("|")]
    assert shown[cells.index("× ref epoch")] == f"{per_run[1] / 2.5:.2f}"
    for bad in ("0", "-3", "nan"):
        refused = cli("report", "--group", "1", "--reference-epoch", bad, check=False)
        assert refused.returncode == 2 and "is not a duration" in refused.stderr, (bad, refused.stderr)


def test_reproduce_refuses_bad_arguments(lab_home, small_data):
    bad = cli("reproduce", "--data", str(small_data), "--epochs-scale", "0", check=False)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1] == "error: epochs scale 0.0 must be a number in (0, 10]; 1 keeps the notebook's epochs"
    missing = cli("reproduce", "--data", str(small_data / "nope"), check=False)
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    assert store.connect().execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 0  # nothing was submitted


def test_scaled_epochs():
    assert [report.scaled_epochs(e) for e in (20, 40, 10)] == [20, 40, 10]
    assert [report.scaled_epochs(e, 0.1) for e in (20, 40, 10, 3)] == [2, 4, 1, 1]
    assert report.scaled_epochs(20, 0.1, epochs=3) == 3
    with pytest.raises(LabError, match="epochs=0 is out of range 1..1000"):
        report.scaled_epochs(20, epochs=0)
    with pytest.raises(LabError, match=r"epochs scale nan must be a number in \(0, 10\]"):
        report.scaled_epochs(20, float("nan"))


def test_report_paths(tmp_path):
    assert report.report_paths(tmp_path / "r") == (tmp_path / "r" / "report.md", tmp_path / "r" / "report.html")
    assert report.report_paths(tmp_path / "x.md") == (tmp_path / "x.md", tmp_path / "x.html")
    assert report.report_paths(tmp_path / "x.html") == (tmp_path / "x.md", tmp_path / "x.html")


def test_markdown_table_escapes_cells():
    table = report.md_table(pd.DataFrame({"a": ["x|y"], "b": ["two\nlines"]}))
    assert table.splitlines() == ["| a | b |", "| --- | --- |", "| x\\|y | two lines |"]


def test_html_renders_markdown_without_raw_html():
    page = report.render_html(report.Report("T <1>", [("md", "# Title\n\n<script>alert(1)</script>\n\n| a |\n| --- |\n| 1 |")]))
    assert "<title>T &lt;1&gt;</title>" in page and "<h1>Title</h1>" in page and "<td>1</td>" in page
    assert "<script>alert" not in page


def test_seeds_are_submitted_seed_by_seed(lab_home, small_data):
    conn = store.connect()
    group, ids = Lab().submit_reproduction(str(small_data), epochs=1, seeds=3)
    assert group == 1 and ids == list(range(1, 16))
    rows = conn.execute("SELECT j.name, r.seed, j.group_id FROM jobs j JOIN runs r ON r.id = j.id ORDER BY j.id").fetchall()
    assert [(r[0], r[1]) for r in rows] == [(name, seed) for seed in range(3) for name in NOTEBOOK_PRESETS]
    assert {r[2] for r in rows} == {1}
    assert [queue.get_job(conn, i).spec["seed"] for i in ids] == [s for s in range(3) for _ in NOTEBOOK_PRESETS]
    for bad in (0, 21, True, 2.0):
        with pytest.raises(LabError, match=rf"seeds={bad!r} is out of range 1..20; 3 gives a spread"):
            report.check_seeds(bad)
    # A report of a group still in the queue says so and draws the notebook alone.
    md = report.render_markdown(report.build_report(conn, ids))
    assert "**0 of 15 runs succeeded** (not: #1 queued, #2 queued," in md
    assert "| exp4 (Conv32-64-64) | 0 | – | – | 72.0% | – | – | 73.5% | – |" in md
    assert "No lab run finished, so the notebook's final validation accuracy (75.6%) has nothing to compare with." in md
    assert "## exp4: Conv32-64-64 (runs #4 seed 0 queued, #9 seed 1 queued, #14 seed 2 queued)" in md
    assert "| 13 | 73.5% | – | – | – | 85.8% | – | – |" in md
    assert "No experiment finished, so there is nothing to recommend." in md
    bad = cli("reproduce", "--data", str(small_data), "--seeds", "0", check=False)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1] == "error: seeds=0 is out of range 1..20; 3 gives a spread"


def test_the_report_names_the_data_source_by_file_name():
    assert report.source_name("/work/shared/datasets/cifar10-jpeg.tar.gz") == "cifar10-jpeg.tar.gz"
    assert report.source_name("/data/cifar-10-batches-py") == "cifar-10-batches-py"
    assert report.source_name("keras") == "keras"
