"""Plotly figures of a sweep: its settings against the result, which setting mattered (fANOVA), and
a searching sweep's trials epoch by epoch, the stopped ones marked where they stopped."""

from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go

TARGET = "best_val_accuracy"
TARGET_LABEL = "best val accuracy"
_MARGIN = dict(l=60, r=20, t=60, b=20)
FEW_VALUES = 6  # numeric axes with this many distinct values or fewer get a tick at each one


def parallel(table: pd.DataFrame, paths: list[str], log_paths: tuple[str, ...] | list[str] = (), height: int = 420) -> go.Figure:
    """Parallel coordinates: one axis per swept path, then best validation accuracy, one line per
    run that has a result, coloured by that accuracy. Log-uniform paths get a log10 axis; text
    and true/false values get one tick per value."""
    scored = table[table[TARGET].notna()] if TARGET in table else table.iloc[0:0]
    dims = [_dimension(scored[p], p, p in log_paths or _spans_decades(scored[p])) for p in paths]
    y = scored[TARGET].astype(float) if not scored.empty else pd.Series(dtype=float)
    dims.append(dict(label=TARGET_LABEL, values=y.tolist(), range=_span(y)))
    low, high = _span(y)
    fig = go.Figure(go.Parcoords(
        dimensions=dims,
        domain=dict(x=[0, 0.88]),  # room on the right for the last axis's labels and the colour bar
        line=dict(color=y.tolist(), colorscale="Viridis", showscale=True, cmin=low, cmax=high,
                  colorbar=dict(title=dict(text="val acc"), x=0.94, thickness=14)),
    ))
    fig.update_layout(height=height, margin=_MARGIN)
    return fig


def _dimension(values: pd.Series, label: str, log: bool) -> dict:
    present = [v for v in values.tolist() if v is not None and not (isinstance(v, float) and math.isnan(v))]
    numeric = bool(present) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present)
    if numeric and log and all(v > 0 for v in present):
        logs = [math.log10(v) if _is_number(v) and v > 0 else None for v in values.tolist()]
        known = [x for x in logs if x is not None]
        lo, hi = math.floor(min(known)), math.ceil(max(known))
        ticks = list(range(lo, hi + 1))
        return dict(label=f"{label} (log)", values=logs, tickvals=ticks, ticktext=[f"{10.0 ** t:g}" for t in ticks],
                    range=[lo, hi] if hi > lo else [lo - 0.5, hi + 0.5])
    if numeric:
        nums = [float(v) if _is_number(v) else None for v in values.tolist()]
        dim = dict(label=label, values=nums, range=_span(pd.Series(present, dtype=float)))
        distinct = sorted(set(present))
        if len(distinct) <= FEW_VALUES:
            dim.update(tickvals=distinct, ticktext=[f"{v:g}" for v in distinct])
        return dim
    labels = sorted({_text(v) for v in values.tolist()})
    codes = {t: i for i, t in enumerate(labels)}
    return dict(label=label, values=[codes[_text(v)] for v in values.tolist()], tickvals=list(range(len(labels))),
                ticktext=labels, range=[-0.5, max(len(labels) - 1, 0) + 0.5])


def _spans_decades(values: pd.Series) -> bool:
    """Positive numbers two or more decades apart (0.0001 .. 0.01) read better on a log axis."""
    nums = [v for v in values.tolist() if _is_number(v)]
    return len(nums) == len(values) > 1 and min(nums) > 0 and max(nums) / min(nums) >= 100


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _text(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "none"
    return str(v)


def _span(values: pd.Series) -> list[float]:
    """The values' [min, max] (Plotly labels an axis's ends with it); a flat range is widened so
    the axis still draws."""
    if values.empty:
        return [0.0, 1.0]
    lo, hi = float(values.min()), float(values.max())
    if hi > lo:
        return [lo, hi]
    pad = max(abs(lo) * 0.05, 0.01)
    return [lo - pad, hi + pad]


IMPORTANCE_TITLE = "fANOVA importance (Optuna)"


def importance(ranked: list[tuple[str, float]], height: int | None = None) -> go.Figure:
    """Horizontal bars of each setting's fANOVA importance (its share of the variance in best
    validation accuracy, by Optuna), the most important on top."""
    names = [name for name, _ in ranked][::-1]
    shares = [share for _, share in ranked][::-1]
    fig = go.Figure(go.Bar(x=shares, y=names, orientation="h", text=[f"{s:.0%}" for s in shares],
                           textposition="auto", marker_color="#1f77b4",
                           hovertemplate="%{y}: %{x:.1%} of the variance<extra></extra>"))
    fig.update_xaxes(range=[0, 1], tickformat=".0%", title_text=f"{IMPORTANCE_TITLE}: share of the variance in best val accuracy")
    fig.update_layout(height=height or 120 + 40 * len(ranked), margin=dict(l=10, r=10, t=20, b=10))
    return fig


STOP_MARKS = {"pruned": dict(symbol="x", size=12, color="#d62728"),  # ended for good: an X
              "paused": dict(symbol="line-ns", size=13, color="#ff7f0e", line=dict(width=3, color="#ff7f0e"))}
PAUSE_OFFSET = 0.06  # epochs between the two bars of a pause mark


def intermediate(curves: pd.DataFrame, height: int = 420) -> go.Figure:
    """Every trial's validation accuracy by epoch, one line each (`analysis.sweeps.trial_curves`);
    a pruned trial ends in an X, a paused one in a pause mark (two bars), the reason in the hover.
    Traces are given to the figure as dicts, validated once: adding hundreds one by one took most
    of a 200-trial Sweeps page's time."""
    points: dict = {}  # run -> (name, state, reason, [(epoch, val_accuracy)]), runs in their first row's order
    for r in curves.itertuples(index=False):
        points.setdefault(r.run, (r.name, r.state, r.reason, []))[3].append((r.epoch, r.val_accuracy))
    traces = []
    for run, (name, state, reason, xy) in points.items():
        xy.sort()
        said = f"<br>{reason}" if state in STOP_MARKS and reason else ""
        traces.append(dict(
            type="scatter", x=[e for e, _ in xy], y=[v for _, v in xy], mode="lines+markers",
            name=f"#{run} {name}", legendgroup=str(run), marker=dict(size=5), meta=state,
            hovertemplate=f"#{run} {name} ({state})<br>epoch %{{x}}: %{{y:.1%}}{said}<extra></extra>"))
        if state in STOP_MARKS:
            x, y = float(xy[-1][0]), float(xy[-1][1])
            xs = [x - PAUSE_OFFSET, x + PAUSE_OFFSET] if state == "paused" else [x]
            traces.append(dict(
                type="scatter", x=xs, y=[y] * len(xs), mode="markers", marker=STOP_MARKS[state],
                name=f"#{run} {state}", legendgroup=str(run), showlegend=False, meta=state,
                hovertext=[f"#{run} {name}: {reason}"] * len(xs), hoverinfo="text"))
    fig = go.Figure(traces)
    fig.update_xaxes(title_text="epoch", dtick=1)
    fig.update_yaxes(title_text="validation accuracy", tickformat=".0%")
    fig.update_layout(height=height, margin=dict(l=60, r=20, t=20, b=40), hovermode="closest")
    return fig


FRONT_COLOR, OTHER_COLOR = "#d62728", "#9aa5b1"


def pareto(table: pd.DataFrame, cost_label: str, height: int = 420) -> go.Figure:
    """A two-objective sweep's complete trials (`analysis.sweeps.SweepFront.table`): the second
    objective across, validation accuracy up; the Pareto front's trials highlighted and joined,
    cheapest first (up and to the left is better)."""
    fig = go.Figure()
    for on, name, color in ((False, "dominated trials", OTHER_COLOR), (True, "Pareto front", FRONT_COLOR)):
        part = table[table["front"] == on].sort_values("cost")
        fig.add_trace(go.Scatter(
            x=part["cost"].tolist(), y=part["val_accuracy"].tolist(), mode="lines+markers" if on else "markers",
            name=name, meta="front" if on else "dominated", line=dict(color=color, shape="hv"),
            marker=dict(color=color, size=11 if on else 8),
            text=[f"#{r} {n}" for r, n in zip(part["run"], part["name"])],
            hovertemplate=f"%{{text}}<br>{cost_label}: %{{x:,.4g}}<br>validation accuracy: %{{y:.1%}}<extra></extra>"))
    fig.update_xaxes(title_text=f"{cost_label} (lower is better)")
    fig.update_yaxes(title_text="validation accuracy (last epoch)", tickformat=".0%")
    fig.update_layout(height=height, margin=dict(l=60, r=20, t=20, b=40), hovermode="closest")
    return fig
