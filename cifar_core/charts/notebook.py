"""Figures of the notebook's recorded curves beside the lab's runs (Run page, reproduce report)."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
from plotly.subplots import make_subplots

from cifar_core.analysis import curves as run_curves
from cifar_core.analysis import notebook
from cifar_core.charts import curves as charts


NOTEBOOK_COLOUR = "#222222"


def history_figure(history: pd.DataFrame, preset: str | None, title: str | None = None, height: int = 300,
                   baseline: pd.DataFrame | None = None, baseline_label: str = "baseline"):
    """`charts.history` of one run, with the notebook's recorded accuracy of `preset` drawn dotted
    in the accuracy panel (nothing added when `preset` is None); a curve the notebook recorded at a
    few epochs only (exp1 to exp3's training accuracy) as unconnected markers. With `baseline` (the
    pinned run's history), its loss and accuracy in grey behind the run's."""
    fig = charts.history(history, title=title, height=height)
    epochs = [*history.get("epoch", [])]
    if baseline is not None and not baseline.empty:
        charts.add_baseline(fig, baseline, baseline_label)
        epochs += list(baseline["epoch"])
    if preset is not None:
        ref = notebook.reference_history(preset)
        for column, split in (("accuracy", "train"), ("val_accuracy", "validation")):
            known = ref[ref[column].notna()]
            fig.add_scatter(
                x=known["epoch"], y=known[column], name=f"{notebook.label(preset)} {split}",
                mode=charts.recorded_mode(ref[column]),
                line=dict(color=charts.TRAIN_COLOUR if split == "train" else charts.VAL_COLOUR, dash="dot", width=1.5),
                marker=dict(symbol="x", size=6), legendgroup=f"notebook {split}",
                hovertemplate=f"epoch %{{x}}: %{{y:.4f}} ({notebook.RECORDED})", row=1, col=2,
            )
        epochs += list(ref["epoch"])
    return charts.epoch_axis(fig, epochs)


def comparison_figure(history: pd.DataFrame, preset: str, labels: Mapping[int, str] | None = None, height: int = 360):
    """The lab's runs of a preset (`results.histories` frame) beside the notebook's recorded curve:
    accuracy per epoch (train solid, validation dashed; the notebook in black) and, on the right,
    the per-epoch difference of validation accuracy, lab mean minus notebook, in points."""
    fig = make_subplots(rows=1, cols=2, column_widths=[0.62, 0.38], horizontal_spacing=0.08,
                        subplot_titles=("accuracy per epoch", "validation accuracy, lab mean minus notebook (points)"))
    lab = run_curves.curves(history, "accuracy", labels=labels) if not history.empty else None
    if lab is not None:
        for k, ((run_label, split), part) in enumerate(lab.groupby(["label", "split"], sort=False)):
            colour = charts.PALETTE[list(lab["label"].unique()).index(run_label) % len(charts.PALETTE)]
            fig.add_scatter(x=part["epoch"], y=part["value"], name=f"{run_label} {split}", mode="lines",
                            line=dict(color=colour, dash=charts.SPLIT_DASH[split], width=1.2), opacity=0.8, row=1, col=1)
    ref = notebook.curves([preset], "accuracy")
    for split, part in ref.groupby("split", sort=False):
        fig.add_scatter(x=part["epoch"], y=part["value"], name=f"{notebook.label(preset)} {split} ({notebook.RECORDED})",
                        mode=charts.recorded_mode(part["raw"]), line=dict(color=NOTEBOOK_COLOUR, dash=charts.SPLIT_DASH[split], width=2.5),
                        marker=dict(size=5), row=1, col=1)
    diff = notebook.epoch_comparison(history, preset).dropna(subset=["val_diff"])
    fig.add_bar(x=diff["epoch"], y=diff["val_diff"] * 100, name="validation: lab mean minus notebook",
                marker_color=[charts.VAL_COLOUR if v >= 0 else "#7f7f7f" for v in diff["val_diff"]], row=1, col=2)
    charts.epoch_axis(fig, [*history.get("epoch", []), *ref["epoch"]])
    fig.update_yaxes(title_text="accuracy", row=1, col=1)
    fig.update_yaxes(title_text="points", row=1, col=2)
    fig.update_layout(height=height, title=f"{preset}: the lab's runs and the notebook's recorded curve",
                      margin=dict(l=10, r=10, t=80, b=10), legend=dict(orientation="h", yanchor="top", y=-0.2, x=0))
    return fig
