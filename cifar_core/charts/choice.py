"""Figures of the Model choice page."""

from __future__ import annotations

import numpy as np
import pandas as pd


LABEL_POSITIONS = ("top center", "bottom center", "top right", "bottom left")  # neighbours by latency alternate


def log_ticks(values) -> tuple[list[float], list[str]]:
    """Ticks of a log axis over `values` (ms) at 1, 2 and 5 times a power of ten, each labelled with
    its whole value ("0.2", "0.5", "1", "2"): Plotly's own labels a decade's minor ticks by their
    first digit alone ("2 3 4 ... 9 1" for 0.2 to 1 ms), which reads ten times too slow."""
    v = pd.to_numeric(pd.Series(values, dtype="float64"), errors="coerce")
    v = v[(v > 0) & np.isfinite(v)]
    if v.empty:
        return [], []
    low, high = np.floor(np.log10(v.min())) - 1, np.ceil(np.log10(v.max())) + 1
    ticks = [m * 10.0 ** e for e in range(int(low), int(high) + 1) for m in (1, 2, 5)]
    lo, hi = v.min() / 2.5, v.max() * 2.5  # the points and a margin on each side
    ticks = [t for t in ticks if lo <= t <= hi]
    return ticks, [f"{t:.10g}" for t in ticks]


def pareto_figure(ranked: pd.DataFrame, height: int = 420):
    """Accuracy against batch-1 p50 latency, one point per candidate (error bars: seed std of the
    accuracy, and the latency's measured spread between rounds, half each side), the Pareto front
    joined by a line and the recommended candidate starred."""
    import plotly.graph_objects as go

    fig = go.Figure()
    if ranked.empty:
        return fig
    spread = ranked["latency_spread_pct"] if "latency_spread_pct" in ranked else np.nan
    data = ranked.assign(acc=ranked["test_accuracy"] * 100, std=ranked["test_accuracy_std"].fillna(0) * 100,
                         noise=(ranked["latency_p50_ms"] * pd.to_numeric(spread) / 200).fillna(0))
    order = data["latency_p50_ms"].rank(method="first").fillna(0).astype(int)
    data = data.assign(label_position=[LABEL_POSITIONS[i % len(LABEL_POSITIONS)] for i in order])
    front = data[data["pareto"]].sort_values("latency_p50_ms")
    fig.add_scatter(x=front["latency_p50_ms"], y=front["acc"], mode="lines", name="Pareto front",
                    line=dict(color="#2ca02c", dash="dash", shape="hv"), hoverinfo="skip")
    for on, name, colour in ((True, "on the front", "#2ca02c"), (False, "dominated", "#7f7f7f")):
        part = data[data["pareto"] == on]
        if part.empty:
            continue
        fig.add_scatter(
            x=part["latency_p50_ms"], y=part["acc"], mode="markers+text", name=name, text=part["label"],
            textposition=part["label_position"].tolist(), marker=dict(size=11, color=colour),
            error_y=dict(type="data", array=part["std"], visible=True),
            error_x=dict(type="data", array=part["noise"], visible=True),
            customdata=np.stack([part["run"], part["runs"], part["params"]], axis=1),
            hovertemplate="%{text} (run #%{customdata[0]}, %{customdata[1]} seed(s))<br>accuracy %{y:.2f}%<br>"
                          "p50 %{x:.2f} ms<br>%{customdata[2]:,} params<extra></extra>",
        )
    pick = data.iloc[[0]]
    fig.add_scatter(x=pick["latency_p50_ms"], y=pick["acc"], mode="markers", name="recommended",
                    marker=dict(symbol="star", size=22, color="#d62728", line=dict(width=1, color="black")),
                    hoverinfo="skip")
    ticks, labels = log_ticks(data["latency_p50_ms"])
    fig.update_xaxes(tickmode="array", tickvals=ticks, ticktext=labels)
    fig.update_layout(
        title="Test accuracy against batch-1 latency", height=height,
        xaxis_title="batch-1 latency p50 (ms, log scale)", yaxis_title="test accuracy (%)",
        xaxis_type="log", margin=dict(l=10, r=10, t=50, b=10),
        legend=dict(orientation="h", yanchor="top", y=-0.18, x=0),
    )
    return fig
