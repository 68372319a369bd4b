"""A figure as an HTML fragment, for pages written to a file (the reproduce report)."""

from __future__ import annotations

import plotly.io as pio


def figure_html(figure, include_plotlyjs: bool) -> str:
    """The figure as a <div>, interactive; with `include_plotlyjs`, plotly.js is inlined before it
    (once per page is enough, so the file opens without a network)."""
    return pio.to_html(figure, include_plotlyjs=include_plotlyjs, full_html=False, config={"displaylogo": False})
