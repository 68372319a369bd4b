"""Figures of the Error analysis and Predict pages."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cifar_core.analysis.stats import in_b_favour

# Two runs compared: one colour per side on every chart of the comparison (RdBu's two ends).
FAVOUR_B, FAVOUR_A, EVEN = "#2166ac", "#b2182b", "#bbbbbb"
DIVERGING = "RdBu"  # low (negative: in A's favour) red, high (in B's favour) blue
FAVOUR_LEGEND = "blue in B's favour, red in A's"
# A prediction's bars: all neutral unless the true class is known; then the true class green and a wrong top class red.
NEUTRAL, RIGHT, WRONG = "#1f77b4", "#2ca02c", "#d62728"


def class_colours(top: pd.DataFrame, true_class: str | None = None) -> list[str]:
    """One colour per row of `top`: neutral when the true class is unknown (an upload); else the
    true class RIGHT and the top class WRONG when it is not the true class."""
    if true_class is None:
        return [NEUTRAL] * len(top)
    return [RIGHT if c == true_class else WRONG if r == 1 else NEUTRAL for c, r in zip(top["class"], top["rank"])]


def probability_figure(top: pd.DataFrame, title: str | None = None, height: int = 300, true_class: str | None = None):
    """Horizontal bars of one model's top classes (`top_classes` or one run of `predict_image`),
    coloured by `class_colours`."""
    import plotly.graph_objects as go

    top = top.sort_values("probability")
    fig = go.Figure(go.Bar(
        x=top["probability"] * 100, y=top["class"], orientation="h", text=[f"{p:.1%}" for p in top["probability"]],
        textposition="auto", marker_color=class_colours(top, true_class),
        hovertemplate="%{y}: %{x:.2f}%<extra></extra>",
    ))
    fig.update_layout(height=height, title=title, xaxis=dict(title="probability (%)", range=[0, 100]),
                      margin=dict(l=10, r=10, t=40 if title else 10, b=10))
    return fig


def per_class_figure(per_class: pd.DataFrame, column: str = "accuracy", title: str | None = None, height: int = 320):
    """Bars of a per-class figure: accuracy (0..1), or a difference (b - a) coloured as the
    confusion difference is: blue in B's favour, red in A's."""
    import plotly.graph_objects as go

    values = per_class[column].astype(float) * 100
    diff = column == "difference"
    colours = [FAVOUR_B if v > 0 else FAVOUR_A if v < 0 else EVEN for v in values] if diff else "#1f77b4"
    fig = go.Figure(go.Bar(x=per_class["class"], y=values, marker_color=colours, text=[f"{v:+.1f}" if diff else f"{v:.1f}"
                                                                                      for v in values],
                           textposition="outside", hovertemplate="%{x}: %{y:.1f}<extra></extra>"))
    fig.update_layout(height=height, title=title,
                      yaxis_title=f"points (B - A): {FAVOUR_LEGEND}" if diff else "accuracy (%)",
                      margin=dict(l=10, r=10, t=40 if title else 10, b=10))
    fig.update_traces(cliponaxis=False)
    if not diff:
        fig.update_yaxes(range=[0, 112])
    return fig


def confusion_figure(counts: np.ndarray, class_names, row_percent: np.ndarray | None = None,
                     title: str | None = None, height: int = 520):
    """Heatmap of a confusion matrix, each cell "count / row %". A difference matrix (B - A counts,
    no row percentages) shows its counts but is coloured by `stats.in_b_favour`, so blue is in B's
    favour everywhere: more right on the diagonal, fewer of that mistake off it (red: in A's)."""
    import plotly.graph_objects as go

    names = list(class_names)
    counts = np.asarray(counts)
    if row_percent is not None:
        z, text = row_percent, [[f"{c}<br>{p:.0f}%" for c, p in zip(cr, pr)] for cr, pr in zip(counts, row_percent)]
        scale, mid, bar = "Blues", None, "% of true class"
        hover = "true %{y}, predicted %{x}: %{text}<extra></extra>"
    else:
        z, text = in_b_favour(counts), [[f"{c:+d}" if c else "0" for c in row] for row in counts]
        scale, mid, bar = DIVERGING, 0, "B - A counts<br>" + FAVOUR_LEGEND.replace(", ", "<br>")
        hover = "true %{y}, predicted %{x}: B - A = %{text}<extra></extra>"
    fig = go.Figure(go.Heatmap(z=z, x=names, y=names, text=text, texttemplate="%{text}", colorscale=scale, zmid=mid,
                               colorbar=dict(title=bar), hovertemplate=hover))
    fig.update_layout(height=height, title=title, xaxis_title="predicted", yaxis_title="true",
                      yaxis_autorange="reversed", margin=dict(l=10, r=10, t=40 if title else 10, b=10))
    return fig
