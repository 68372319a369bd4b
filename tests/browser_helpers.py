"""Read a Streamlit page in Chromium (Playwright) for the browser tests: Plotly charts as drawn,
st.dataframe rows, and polling for a condition. Starting and stopping the app is
`cifar_core.testing.appserver`."""

from __future__ import annotations

from cifar_core.testing.procs import wait_for


def plotly_points(locator) -> list[int]:
    """Points per trace of the visible Plotly chart inside `locator`, as plotly.js drew them
    (`_fullData`: `data` may still hold Plotly's base64 array specs); [] while none is drawn.
    A rerun can leave a hidden copy of the chart beside the new one for a moment: it is skipped."""
    return locator.locator(".js-plotly-plot").evaluate_all(
        """plots => plots.filter(gd => gd.offsetParent !== null && gd._fullData)
                         .map(gd => gd._fullData.map(t => (t.x && t.x.length) || 0))[0] || []"""
    )


def plotly_traces(locator) -> list[dict]:
    """The traces of the visible Plotly chart inside `locator` as plotly.js drew them: name and x
    values of each; [] while none is drawn (hidden copies skipped, as in `plotly_points`)."""
    return locator.locator(".js-plotly-plot").evaluate_all(
        """plots => plots.filter(gd => gd.offsetParent !== null && gd._fullData)
                         .map(gd => gd._fullData.map(t => ({name: t.name, x: Array.from(t.x || [])})))[0] || []"""
    )


def grid_rows(locator) -> list[dict[str, str]]:
    """The rows of an st.dataframe as {column: text}. The grid paints on a canvas; this reads the
    accessible table it keeps beside it (header row, then the rows in view)."""
    rows = locator.locator("[role=row]").evaluate_all(
        "rows => rows.map(r => [...r.querySelectorAll('[role=columnheader], [role=gridcell]')].map(c => c.textContent))"
    )
    return [dict(zip(rows[0], r)) for r in rows[1:]] if rows else []


poll = wait_for  # the one polling helper, named as the browser tests call it
