"""The notebook, reproduced through the lab: its five experiments (exp1..exp5), with one or more
seeds, as one group (`reproduction`; `Lab.reproduce` submits them, makes sure a worker trains them
and waits while printing progress), and the report on them in Markdown and in HTML (Plotly figures
embedded, plotly.js inlined once so it opens offline).

The report starts with the lab's final and best validation accuracy over seeds (mean, std,
min-max) against the notebook's recorded figures, saying whether each falls inside the seed
range. For each experiment it gives the network (Keras-style summary), parameters, epochs, the
per-epoch accuracy of the lab's runs beside the notebook's recorded curve (cifar_core.analysis.notebook)
with their difference, each run's diagnosis beside the notebook's reading, and a figure; it ends
with the deployment scorecard, the accuracy-latency Pareto front and the recommendation for
production (cifar_core.analysis.choice), computed on these runs only.
"""

from __future__ import annotations

import html
import math
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pandas as pd

from cifar_core import config
from cifar_core.analysis import choice, diagnosis, notebook
from cifar_core.charts import choice as choice_charts
from cifar_core.charts import notebook as notebook_charts
from cifar_core.errors import LabError
from cifar_core.jobs import keeping, queue, results, store
from cifar_core.spec import identity
from cifar_core.spec.presets import NOTEBOOK_PRESETS, PRESET_TITLES, get_preset

GROUP_NAME = "notebook reproduction"
# The notebook's own figures in the per-run table (its recorded curves are in cifar_core.notebook).
def _notebook_figure(name: str) -> str:
    ref = notebook.reference(name)
    best = ref.best_val_accuracy
    return f"{ref.final_val_accuracy:.1%}" + (f" (best {best:.1%})" if best > ref.final_val_accuracy else "")


MAX_SEEDS = 20  # seeds per experiment in one reproduction


# ---------------------------------------------------------------- submitting


def scaled_epochs(preset_epochs: int, epochs_scale: float = 1.0, epochs: int | None = None) -> int:
    """Epochs for one preset: `epochs` if given, else the preset's scaled (at least 1)."""
    if epochs is not None:
        if isinstance(epochs, bool) or not isinstance(epochs, int) or not 1 <= epochs <= 1000:
            raise LabError(f"epochs={epochs!r} is out of range 1..1000")
        return epochs
    if not (isinstance(epochs_scale, (int, float)) and math.isfinite(epochs_scale) and 0 < epochs_scale <= 10):
        raise LabError(f"epochs scale {epochs_scale!r} must be a number in (0, 10]; 1 keeps the notebook's epochs")
    return max(1, round(preset_epochs * epochs_scale))


def check_seeds(seeds) -> int:
    """The number of seeds per experiment, 1..MAX_SEEDS; LabError otherwise."""
    if isinstance(seeds, bool) or not isinstance(seeds, int) or not 1 <= seeds <= MAX_SEEDS:
        raise LabError(f"seeds={seeds!r} is out of range 1..{MAX_SEEDS}; 3 gives a spread")
    return seeds


def reproduction(epochs_scale: float = 1.0, epochs: int | None = None, seeds: int = 1) -> tuple[list[dict], tuple]:
    """The notebook's five experiments with seeds 0..seeds-1, seed by seed (every experiment's
    seed 0 first, so a cut-short run still covers all five), and their queue group."""
    check_seeds(seeds)
    docs = []
    for seed in range(seeds):
        for name in NOTEBOOK_PRESETS:
            doc = get_preset(name)
            doc["epochs"] = scaled_epochs(doc["epochs"], epochs_scale, epochs)
            doc["seed"] = seed
            docs.append(doc)
    detail = {"presets": list(NOTEBOOK_PRESETS), "epochs_scale": epochs_scale, "epochs": epochs, "seeds": seeds}
    return docs, (queue.GROUP_REPRODUCE, GROUP_NAME, detail)


# ---------------------------------------------------------------- the report


@dataclass(frozen=True, eq=False)
class Report:
    title: str
    blocks: list = field(default_factory=list)  # ("md", text) or ("figure", plotly figure)
    run_ids: tuple[int, ...] = ()
    recommendation: choice.Recommendation | None = None
    summary: pd.DataFrame | None = None  # one row per experiment


@dataclass(frozen=True)
class ReproduceResult:
    group: int
    run_ids: tuple[int, ...]
    markdown: Path
    html: Path
    failed: tuple[int, ...]  # jobs that did not succeed


def _pct(v) -> str:
    return "–" if v is None or v != v else f"{v * 100:.1f}%"


def _num(v, fmt: str = "{:.1f}") -> str:
    return "–" if v is None or v != v else fmt.format(v)


def md_table(frame: pd.DataFrame) -> str:
    """A GitHub-style Markdown table (cells with '|' escaped)."""
    cols = [str(c) for c in frame.columns]
    cell = lambda v: str(v).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join(" --- " for _ in cols) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def group_runs(conn: sqlite3.Connection, group_id: int) -> list[int]:
    ids = store.group_job_ids(conn, group_id)
    if not ids:
        raise LabError(f"group {group_id} has no jobs; the group id is printed by `reproduce`")
    return ids


def summary_table(conn: sqlite3.Connection, run_ids: list[int]) -> pd.DataFrame:
    """One row per run: experiment, params, epochs, final train/val accuracy, best val accuracy,
    test accuracy, seconds per epoch, verdict, and the notebook's figure for the preset."""
    board = results.leaderboard_rows(conn, run_ids).set_index("run")
    verdicts = diagnosis.verdicts(conn, run_ids).set_index("run")
    rows = []
    for run in run_ids:
        b = board.loc[run]
        rows.append({
            "run": run, "experiment": b["name"], "network": PRESET_TITLES.get(b["name"], ""), "status": b["status"],
            "params": int(b["params"]), "epochs": int(b["epochs"]), "final_train_acc": b["final_accuracy"],
            "final_val_acc": b["final_val_accuracy"], "best_val_acc": b["best_val_accuracy"],
            "test_acc": b["test_accuracy"], "seconds_per_epoch": b["seconds_per_epoch"],
            "verdict": verdicts.loc[run, "verdict"] if run in verdicts.index else "–",
            "notebook": _notebook_figure(b["name"]) if b["name"] in NOTEBOOK_PRESETS else "–",
            "tags": ", ".join(b["tags"]), "notes": b["notes"],
        })
    return pd.DataFrame(rows)


def _display_summary(summary: pd.DataFrame, reference_epoch: float | None = None) -> pd.DataFrame:
    shown = pd.DataFrame({
        "experiment": [f"{e} ({n})" if n else e for e, n in zip(summary["experiment"], summary["network"])],
        "run": [f"#{r}" for r in summary["run"]],
        "params": [f"{p:,}" for p in summary["params"]],
        "epochs": summary["epochs"],
        "final train acc": summary["final_train_acc"].map(_pct),
        "final val acc": summary["final_val_acc"].map(_pct),
        "best val acc": summary["best_val_acc"].map(_pct),
        "test acc": summary["test_acc"].map(_pct),
        "s/epoch": summary["seconds_per_epoch"].map(_num),
        "verdict": summary["verdict"],
        "notebook (val acc)": summary["notebook"],
        "tags": summary["tags"].replace("", "–"),
    })
    if reference_epoch is not None:
        shown.insert(shown.columns.get_loc("s/epoch") + 1, "× ref epoch",
                     (summary["seconds_per_epoch"] / reference_epoch).map(lambda v: _num(v, "{:.2f}")))
    return shown


def check_reference_epoch(seconds) -> float | None:
    """The reference epoch's seconds (scripts/reference_epoch.py), or None; a bad value is refused."""
    if seconds is None:
        return None
    value = float(seconds)
    if not 0 < value < 86_400:
        raise LabError(f"reference epoch of {seconds!r} s is not a duration; give the seconds "
                       "scripts/reference_epoch.py printed in the same session (e.g. 34.1)")
    return value


source_name = identity.source_name  # the file or folder name, never the path on the machine that wrote it


def _spread(mean, std, low, high) -> str:
    """"72.1% ± 0.4 (71.7–72.5%)": mean ± std in points, then min–max."""
    if mean != mean:
        return "–"
    sd = "" if std != std else f" ± {std * 100:.1f}"
    return f"{mean * 100:.1f}%{sd} ({low * 100:.1f}–{high * 100:.1f}%)"


def _inside_text(seeds: pd.DataFrame, key: str) -> list[str]:
    """"yes"/"no"; "–" without a finished run, "(1 run)" when one run cannot show a spread."""
    return ["–" if n == 0 else f"{'yes' if inside else 'no'}" + (" (1 run)" if n == 1 else "")
            for n, inside in zip(seeds["runs"], seeds[f"{key}_inside"])]


def _seed_table(seeds: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "experiment": [f"{e} ({PRESET_TITLES.get(e, '')})" for e in seeds["experiment"]],
        "runs": seeds["runs"],
        "epochs": [", ".join(map(str, e)) or "–" for e in seeds["epochs"]],
        "final val acc (lab: mean ± std, min–max)": [_spread(*r) for r in seeds[["final_mean", "final_std", "final_min", "final_max"]].itertuples(index=False)],
        "notebook final": seeds["notebook_final"].map(_pct),
        "final inside?": _inside_text(seeds, "final"),
        "best val acc (lab: mean ± std, min–max)": [_spread(*r) for r in seeds[["best_mean", "best_std", "best_min", "best_max"]].itertuples(index=False)],
        "notebook best": seeds["notebook_best"].map(_pct),
        "best inside?": _inside_text(seeds, "best"),
    })


def build_report(conn: sqlite3.Connection, run_ids: list[int], title: str = "CIFAR-10 notebook, reproduced",
                 reference_epoch: float | None = None) -> Report:
    """The report's blocks for these runs (the five notebook experiments over one or more seeds, or
    any runs): the lab's figures over seeds against the notebook's recorded ones, then one section
    per experiment with the notebook's curve beside the lab's and their per-epoch difference.
    With `reference_epoch` (seconds of one reference epoch timed in the same session), epoch
    times are also given as multiples of it, since a shared host's speed drifts."""
    from cifar_core.spec.summary import summarize

    if not run_ids:
        raise LabError("no runs to report on; submit the experiments first")
    run_ids, trashed = _out_of_trash(conn, run_ids)
    jobs = [queue.get_job(conn, r) for r in run_ids]
    sources = sorted({source_name(j.data_source) for j in jobs})
    summary = summary_table(conn, run_ids)
    seeds = notebook.seed_comparison(summary)
    seed_list = sorted({int(j.spec.get("seed", 0)) for j in jobs})
    head = [
        f"# {title}",
        "",
        f"Written {datetime.now():%Y-%m-%d %H:%M} by CIFAR Lab (`python -m cifar_core reproduce`). "
        f"Data: {', '.join(f'`{s}`' for s in sources)}. "
        f"Runs {', '.join(f'#{r}' for r in run_ids)}; seeds {', '.join(map(str, seed_list))}. The presets are the notebook's "
        "networks layer for layer with its settings: Adam, batch 32, the test set as validation data (so validation "
        "and test accuracy are the same images). The notebook's figures are its recorded curves "
        f"({notebook.RECORDED}).",
    ]
    reference_epoch = check_reference_epoch(reference_epoch)
    if reference_epoch is not None:
        head += ["", f"Times: one reference epoch (plain Keras `model.fit`, batch 32, no validation, of the notebook's "
                     f"original exp4 net, 122,570 parameters; `scripts/reference_epoch.py`) took {reference_epoch:.1f} s "
                     "on this machine in the same session; *× ref epoch* is each run's epoch (with validation) in "
                     "that unit."]
    if trashed:
        head += ["", f"**{_runs_text(trashed).capitalize()} in the trash** and left out of this report (restorable until the "
                     f"trash is emptied: `python -m cifar_core undelete {' '.join(map(str, trashed))}`, then write the "
                     "report again)."]
    unfinished = [j for j in jobs if j.state != queue.SUCCEEDED]
    if unfinished:
        states = ", ".join(f"#{j.id} {j.state}" for j in unfinished)
        head += ["", f"**{len(jobs) - len(unfinished)} of {len(jobs)} runs succeeded** (not: {states}); the figures "
                     "over seeds cover the succeeded runs only."]
    head += [
        "",
        "## Summary",
        "",
    ]
    if not seeds.empty:
        head += [
            "The lab's runs over seeds against the notebook (*inside?*: the notebook's figure lies within the lab's "
            "seed range, min to max; std is the spread over seeds, in points):",
            "",
            md_table(_seed_table(seeds)),
            "",
            *[f"- **{r.experiment}**: {r.final_sentence} {r.best_sentence}" for r in seeds.itertuples()],
            "",
            "Every run:",
            "",
        ]
    head.append(md_table(_display_summary(summary, reference_epoch)))
    noted = summary[summary["notes"] != ""]
    if len(noted):
        head += ["", "Notes on the runs:", "", *[f"- **#{r.run}**: {' '.join(r.notes.split())}" for r in noted.itertuples()]]
    blocks: list = [("md", "\n".join(head))]
    by_name: dict[str, list[queue.Job]] = {}
    for job in jobs:
        by_name.setdefault(job.name, []).append(job)
    for name, mine in by_name.items():
        blocks += _experiment_blocks(conn, name, mine, summarize)
    chosen, rec = _choice_blocks(conn, [j.id for j in jobs if j.state == queue.SUCCEEDED])
    return Report(title, blocks + chosen, tuple(run_ids), rec, summary)


def _out_of_trash(conn: sqlite3.Connection, run_ids: list[int]) -> tuple[list[int], list[int]]:
    """The runs a report covers and those it leaves out, being in the trash (their files are
    there, their rows hidden); LabError when every run is in the trash."""
    trash = keeping.hidden(conn, show_archived=True).trashed  # an archived run is still reported: it was asked for
    kept, trashed = [r for r in run_ids if r not in trash], [r for r in run_ids if r in trash]
    if not kept:
        ids = " ".join(map(str, trashed))
        raise LabError(f"{_runs_text(trashed).capitalize()} in the trash, so there is nothing to report on; bring them back with "
                       f"`python -m cifar_core undelete {ids}` (or the Leaderboard), then write the report again")
    return kept, trashed


def _runs_text(run_ids: list[int]) -> str:
    return f"run #{run_ids[0]} is" if len(run_ids) == 1 else f"runs {', '.join(f'#{r}' for r in run_ids)} are"


def _experiment_blocks(conn, name: str, jobs: list[queue.Job], summarize) -> list:
    """One experiment's section: its runs (one per seed), the network, the per-epoch comparison with
    the notebook (for a notebook preset), each run's diagnosis and the figures."""
    from cifar_core.charts import curves as charts

    first = jobs[0]
    details = [results.run_detail(conn, j.id) for j in jobs]
    runs = ", ".join(f"#{j.id} seed {d.seed} {j.state}" for j, d in zip(jobs, details))
    head = [f"## {name}: {PRESET_TITLES.get(name, first.spec.get('name', ''))} (run{'s' * (len(jobs) > 1)} {runs})", ""]
    if first.spec.get("description"):
        head += [first.spec["description"], ""]
    for job in jobs:
        if job.error and job.state != queue.SUCCEEDED:
            head += [f"**#{job.id} {job.state}:** {job.error}", ""]
    histories = results.histories(conn, [j.id for j in jobs])
    sec = histories["seconds"].mean() if not histories.empty else float("nan")
    trained = [d.train_seconds for d in details if d.train_seconds is not None]
    tests = [d.test_accuracy for d in details if d.test_accuracy is not None]
    head += [
        f"- Parameters: {details[0].params:,}",
        f"- Epochs: {', '.join(str(int((histories['run'] == j.id).sum())) for j in jobs)} of {first.epochs} planned; "
        f"{_num(sec)} s per epoch; trained in {', '.join(_num(t, '{:.0f}') for t in trained) or '–'} s",
        f"- Optimizer: {first.spec.get('optimizer', 'adam')}, learning rate {first.spec.get('learning_rate')}, batch "
        f"{first.spec.get('batch_size')}",
        f"- Test accuracy: {', '.join(_pct(t) for t in tests) or '–'}",
    ]
    is_notebook = name in notebook.VAL_ACCURACY and notebook.matching_preset(first.spec) == name
    if is_notebook:
        ref = notebook.reference(name)
        head += [f"- Notebook ({ref.note}): final validation accuracy {_pct(ref.final_val_accuracy)}, best "
                 f"{_pct(ref.best_val_accuracy)} (epoch {ref.best_epoch}), final training accuracy {_pct(ref.final_accuracy)}"]
    head += ["", "Network:", "", "```", summarize(first.spec).to_text(), "```", ""]
    succeeded = [j.id for j in jobs if j.state == queue.SUCCEEDED]
    done = histories[histories["run"].isin(succeeded)]  # an unfinished run would skew the per-epoch mean
    if is_notebook:
        cmp = notebook.epoch_comparison(done, name)
        pts = lambda v: _num(v * 100 if v == v else v, "{:+.1f}")  # noqa: E731
        seeds_range = cmp.apply(lambda r: "–" if r["lab_val_min"] != r["lab_val_min"] else
                                f"{r['lab_val_min'] * 100:.1f}–{r['lab_val_max'] * 100:.1f}%", axis=1)
        table = pd.DataFrame({
            "epoch": cmp["epoch"].astype(int), "notebook val": cmp["notebook_val"].map(_pct),
            "lab val (mean)": cmp["lab_val"].map(_pct), "lab val (min–max)": seeds_range,
            "val difference (pts)": cmp["val_diff"].map(pts), "notebook train": cmp["notebook_train"].map(_pct),
            "lab train (mean)": cmp["lab_train"].map(_pct), "train difference (pts)": cmp["train_diff"].map(pts),
        })
        head += [f"Per epoch, the lab's {len(succeeded)} finished run{'s' * (len(succeeded) != 1)} against the notebook "
                 "(difference: lab mean minus notebook, in points; "
                 "– where a side has no figure, e.g. the training accuracy the notebook did not print):", "",
                 md_table(table), ""]
    elif not histories.empty:
        per_epoch = pd.DataFrame({
            "run": histories["run"].map(lambda r: f"#{r}"), "epoch": histories["epoch"].astype(int),
            "train acc": histories["accuracy"].map(_pct), "val acc": histories["val_accuracy"].map(_pct),
            "train loss": histories["loss"].map(lambda v: _num(v, "{:.4f}")),
            "val loss": histories["val_loss"].map(lambda v: _num(v, "{:.4f}")), "seconds": histories["seconds"].map(_num),
        })
        head += ["Per epoch:", "", md_table(per_epoch), ""]
    verdicts = []
    for job, detail in zip(jobs, details):
        if detail.history.empty:
            head.append(f"- #{job.id} (seed {detail.seed}): no finished epoch.")
            continue
        d = diagnosis.diagnose_run(detail.history, job.spec)
        state = "" if job.state == queue.SUCCEEDED else f", {job.state}"
        if not state:
            verdicts.append(d.verdict)
        head.append(f"- **#{job.id} (seed {detail.seed}{state}) diagnosis: {d.title}.** {d.text} *Next step:* {d.next_step}")
    if is_notebook:
        head += ["", notebook.verdict_agreement(name, verdicts)]
    blocks = [("md", "\n".join(head))]
    if is_notebook:
        labels = {j.id: f"#{j.id} seed {d.seed}" for j, d in zip(jobs, details)}
        blocks.append(("figure", notebook_charts.comparison_figure(done, name, labels)))
    elif len(jobs) == 1 and not details[0].history.empty:
        blocks.append(("figure", charts.history(details[0].history, title=f"{name}: loss and accuracy per epoch")))
    return blocks


def _choice_blocks(conn, run_ids: list[int]) -> tuple[list, choice.Recommendation | None]:
    head = "## Recommendation for production"
    if not run_ids:
        return [("md", f"{head}\n\nNo experiment finished, so there is nothing to recommend.")], None
    made = choice.choose(conn, run_ids=run_ids)
    ranked = made.candidates
    table = pd.DataFrame({
        "rank": ranked["rank"], "experiment": ranked["label"], "run": [f"#{r}" for r in ranked["run"]],
        "test acc": ranked["test_accuracy"].map(_pct), "params": [f"{p:,}" for p in ranked["params"]],
        "model file": ranked["model_bytes"].map(lambda b: _num(None if b is None else b / 1e3, "{:,.0f} KB")),
        "p50 ms": ranked["latency_p50_ms"].map(lambda v: _num(v, "{:.2f}")),
        "p95 ms": ranked["latency_p95_ms"].map(lambda v: _num(v, "{:.2f}")),
        "img/s @256": ranked["throughput_ips"].map(lambda v: _num(v, "{:,.0f}")),
        "train s": ranked["train_seconds"].map(lambda v: _num(v, "{:.0f}")),
        "gap (pts)": ranked["gap"].map(lambda v: _num(v * 100 if v == v else v)),
        "verdict": ranked["verdict"], "Pareto": ranked["pareto"].map({True: "yes", False: "no"}), "why": ranked["why"],
    })
    blocks = [
        ("md", "\n".join([head, "", "Deployment scorecard (latency at batch 1 and throughput at batch 256 measured on "
                          "this machine right after training):", "", md_table(table)])),
        ("figure", choice_charts.pareto_figure(ranked)),
        ("md", made.recommendation.text if made.recommendation else "No recommendation."),
    ]
    return blocks, made.recommendation


def render_markdown(report: Report) -> str:
    parts = []
    for kind, value in report.blocks:
        if kind == "md":
            parts.append(value)
        elif kind == "figure":
            title = value.layout.title.text if value.layout.title and value.layout.title.text else "figure"
            parts.append(f"*(Figure: {title}; interactive in the HTML version of this report.)*")
    return "\n\n".join(parts) + "\n"


HTML_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}
table{border-collapse:collapse;margin:.8em 0;font-size:.9em}th,td{border:1px solid #ccc;padding:.25em .55em;
text-align:left}th{background:#f3f3f3}pre{background:#f7f7f7;padding:.8em;overflow-x:auto;font-size:.85em}
h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
"""


def render_html(report: Report) -> str:
    """One self-contained page: the Markdown rendered, the figures interactive, plotly.js
    inlined once (the first figure carries it) so the file opens without a network."""
    from markdown_it import MarkdownIt

    from cifar_core.charts.html import figure_html

    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    body, first = [], True
    for kind, value in report.blocks:
        if kind == "md":
            body.append(md.render(value))
        elif kind == "figure":
            body.append(figure_html(value, include_plotlyjs=first))
            first = False
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(report.title)}"
            f"</title><style>{HTML_STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def report_paths(out: Path | str | None, name: str = "reproduce") -> tuple[Path, Path]:
    """(markdown, html) paths: OUT.md and OUT.html for a .md/.html path, else OUT/report.md and
    OUT/report.html; default <lab home>/reports/<name>-<timestamp>/."""
    if out is None:
        out = config.lab_home() / "reports" / f"{name}-{datetime.now():%Y%m%d-%H%M%S}"
    out = Path(out).expanduser()
    if out.suffix.lower() in (".md", ".html", ".htm"):
        return out.with_suffix(".md"), out.with_suffix(".html")
    return out / "report.md", out / "report.html"


def write_report(report: Report, out: Path | str | None = None, name: str = "reproduce") -> tuple[Path, Path]:
    md_path, html_path = report_paths(out, name)
    md_path.parent.mkdir(parents=True, exist_ok=True)
    md_path.write_text(render_markdown(report), encoding="utf-8")
    html_path.write_text(render_html(report), encoding="utf-8")
    return md_path, html_path
