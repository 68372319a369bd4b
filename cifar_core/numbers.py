"""How the lab writes a number for people: one formatter per kind, used by every page, table,
the CLI and the reports, so one figure reads the same everywhere.

A percentage is rounded (never cut) to two decimals ("63.71%" for 0.637099). Tables show the
value `shown_fraction` returns: Streamlit's number columns cut a value to their step's decimals,
so a table cell of an already rounded fraction reads what `percent` writes.
"""

from __future__ import annotations

PERCENT_DECIMALS = 2  # "45.15%"


def shown_fraction(value: float | None, decimals: int = PERCENT_DECIMALS) -> float | None:
    """`value` (a fraction) rounded as `percent` shows it: 0.637099 -> 0.6371."""
    if value is None or value != value:
        return value
    return round(float(value), decimals + 2)


def percent(value: float | None, signed: bool = False, decimals: int = PERCENT_DECIMALS) -> str:
    """A fraction as a percentage, rounded: "63.71%" ("+1.20%" signed); "–" when unknown."""
    if value is None or value != value:
        return "–"
    shown = shown_fraction(value, decimals) * 100
    return f"{shown:+.{decimals}f}%" if signed else f"{shown:.{decimals}f}%"


def points(difference: float | None, signed: bool = False, decimals: int = PERCENT_DECIMALS) -> str:
    """A difference of two fractions in percentage points, as precise as `percent` writes each
    of them: "-0.02" for 0.3884 against 0.3886 (never "-0.0"); "0.00" when it rounds to nothing."""
    if difference is None or difference != difference:
        return "–"
    shown = round(float(difference) * 100, decimals)
    if shown == 0:
        return f"{0:.{decimals}f}"
    return f"{shown:+.{decimals}f}" if signed else f"{shown:.{decimals}f}"
