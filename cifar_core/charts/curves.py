"""Plotly figures the pages draw. Each builder takes plain frames and returns a figure; no I/O."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

TRAIN_COLOUR, VAL_COLOUR = "#1f77b4", "#ff7f0e"
PALETTE = qualitative.Plotly
SPLIT_DASH = {"train": "solid", "val": "dash"}
# The legend sits at the bottom of the figure, below the axis titles, left-aligned: Plotly's toolbar
# (the modebar) floats over the top right corner, where a legend above the plot ends up once it is wide.
LEGEND = dict(orientation="h", yref="container", y=0, yanchor="bottom", x=0, xanchor="left")
_LAYOUT = dict(margin=dict(l=10, r=10, t=50, b=40), legend=LEGEND)
EPOCH_TICKS = 10  # at most about this many epoch ticks


def epoch_axis(fig: go.Figure, epochs) -> go.Figure:
    """Every x axis of `fig` as epochs: whole-number ticks (1, 2, 3... or every 2, 5, 10...) over a
    range that starts at epoch 1, so one recorded epoch shows as "1", never 0, 0.2, ... 1."""
    values = pd.to_numeric(pd.Series(epochs, dtype="float64"), errors="coerce").dropna()
    last = max(1.0, float(values.max())) if not values.empty else 1.0
    step = next(s for s in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000) if (last - 1) / s <= EPOCH_TICKS)
    ticks = [1, *range(step, int(last) + 1, step)] if step > 1 else list(range(1, int(last) + 1))
    pad = 0.5 if last < 3 else max(0.2, min(0.5, 0.03 * (last - 1)))
    first = min(1.0, float(values.min())) if not values.empty else 1.0  # a point inside epoch 1 (0.4) stays in view
    fig.update_xaxes(tickmode="array", tickvals=ticks, ticktext=[str(t) for t in ticks],
                     range=[max(0.0, first - pad) if first < 1 else 1 - pad, last + pad], title_text="epoch")
    return fig


def class_counts(counts: pd.DataFrame) -> go.Figure:
    """Grouped bars of images per class, one colour per split (`gallery.counts_frame`)."""
    fig = go.Figure()
    for split, part in counts.groupby("split", sort=False):
        fig.add_bar(x=part["class"], y=part["images"], name=str(split))
    fig.update_layout(barmode="group", height=300, yaxis_title="images", **_LAYOUT)
    return fig


RUNNING_NAME = "train (running)"  # the legend entry of the running points inside epochs


def history(history: pd.DataFrame, title: str | None = None, height: int = 300,
            running: pd.DataFrame | None = None) -> go.Figure:
    """Loss and accuracy per epoch of one run, train and validation, side by side; with `running`
    (`results.running_points` of the run: fractional epochs), the running training figures inside
    the epochs as a thin dotted line beside the per-epoch markers."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("loss", "accuracy"), horizontal_spacing=0.08)
    running = running if running is not None else pd.DataFrame(columns=["epoch", "loss", "accuracy"])
    for col, (train, val) in enumerate((("loss", "val_loss"), ("accuracy", "val_accuracy")), start=1):
        if running[train].notna().any():
            fig.add_scatter(
                x=running["epoch"], y=running[train], name=RUNNING_NAME, mode="lines",
                line=dict(color=TRAIN_COLOUR, width=1, dash="dot"), legendgroup=RUNNING_NAME, showlegend=col == 1,
                hovertemplate="epoch %{x:.2f}: %{y:.4f} (running)<extra></extra>", row=1, col=col,
            )
        for column, name, colour in ((train, "train", TRAIN_COLOUR), (val, "validation", VAL_COLOUR)):
            if column in history and history[column].notna().any():
                fig.add_scatter(
                    x=history["epoch"], y=history[column], name=name, mode="lines+markers",
                    line=dict(color=colour), legendgroup=name, showlegend=col == 1, row=1, col=col,
                )
    epochs = history["epoch"].tolist() if "epoch" in history else []
    epoch_axis(fig, epochs + running["epoch"].tolist())
    fig.update_yaxes(rangemode="tozero")
    fig.update_layout(height=height, title=title, **_LAYOUT)
    return fig


BASELINE_COLOUR = "#7f7f7f"


def add_baseline(fig: go.Figure, history: pd.DataFrame, label: str) -> go.Figure:
    """The pinned baseline run's loss and accuracy (train solid, validation dashed) in grey, in the
    two panels of a `history` figure."""
    for col, (train, val) in enumerate((("loss", "val_loss"), ("accuracy", "val_accuracy")), start=1):
        for column, split in ((train, "train"), (val, "val")):
            if column in history and history[column].notna().any():
                fig.add_scatter(x=history["epoch"], y=history[column], name=f"{label} {split}", mode="lines",
                                line=dict(color=BASELINE_COLOUR, dash=SPLIT_DASH[split], width=1.2), opacity=0.8,
                                legendgroup=f"{label} {split}", showlegend=col == 1, row=1, col=col)
    return fig


RATE_DIGITS = 6  # a rate recorded as float32 (0.00100000005) is drawn at 6 significant digits (0.001)


def recorded_mode(values) -> str:
    """How a recorded series is drawn: joined by lines while its known points follow each other;
    as markers alone when epochs between them were never recorded (nothing is interpolated)."""
    known = pd.Series(values, dtype="float64").notna().to_numpy()
    if known.any():
        first, last = known.argmax(), len(known) - known[::-1].argmax()
        if not known[first:last].all():
            return "markers"
    return "lines+markers"


def _significant(values: pd.Series, digits: int = RATE_DIGITS) -> pd.Series:
    return pd.Series([float(f"{v:.{digits}g}") if v == v else v for v in values.astype("float64")], index=values.index)


def overlay(curves: pd.DataFrame, metric: str, log_y: bool = False, height: int = 420) -> go.Figure:
    """Several runs' curves of one metric on shared axes (`compare.curves`): a colour per run,
    solid for train and dashed for validation; hover shows the unsmoothed value too. Curves that are
    the same points (two runs at one constant learning rate) are drawn once, named together; a curve
    with unrecorded epochs between its points is drawn as markers. Learning rates are rounded to
    significant digits (float32 noise) and formatted without trailing digits."""
    fig = go.Figure()
    rate = metric in ("learning rate", "learning_rate")
    colours = {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(curves["label"].unique())}
    series: dict[tuple, list] = {}  # identical points -> [(label, split), ...] in order of first appearance
    parts = {}
    for (label, split), part in curves.groupby(["label", "split"], sort=False):
        if rate:
            part = part.assign(value=_significant(part["value"]), raw=_significant(part["raw"]))
        points = (split, tuple(part["epoch"]), tuple(round(v, 12) if v == v else None for v in part["value"]))
        series.setdefault(points, []).append((label, split))
        parts[points] = parts.get(points, part)
    value = "%{y:.4~g}" if rate else "%{y:.4f}"
    raw = "%{customdata:.4~g}" if rate else "%{customdata:.4f}"
    for points, named in series.items():
        part, (label, split) = parts[points], named[0]
        name = f"{', '.join(str(n) for n, _ in named)} {split}"
        fig.add_scatter(
            x=part["epoch"], y=part["value"], name=name, mode=recorded_mode(part["raw"]),
            line=dict(dash=SPLIT_DASH.get(split, "solid"), color=colours[label]), legendgroup=str(label),
            customdata=part["raw"], hovertemplate=f"epoch %{{x}}: {value} (raw {raw})",
        )
    epoch_axis(fig, curves["epoch"] if "epoch" in curves else [])
    fig.update_yaxes(title_text=metric, type="log" if log_y else "linear")
    if rate:
        fig.update_yaxes(tickformat="~g")
    fig.update_layout(height=height, **_LAYOUT)
    return fig


def schedule(preview: pd.DataFrame, height: int = 150) -> go.Figure:
    """The learning rate over the epochs of a schedule preview (epoch, learning_rate)."""
    fig = go.Figure(go.Scatter(x=preview["epoch"], y=preview["learning_rate"], mode="lines",
                               hovertemplate="epoch %{x:.2f}: %{y:.3g}<extra></extra>"))
    fig.update_layout(height=height, margin=dict(l=0, r=0, t=0, b=0), xaxis_title="epoch", yaxis_title="learning rate",
                      yaxis_range=[0, 1.1 * preview["learning_rate"].max()])  # a flat line stays at its rate
    return fig
