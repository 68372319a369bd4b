"""The Leaderboard page's view: its filters. Plain pandas, no drawing."""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from cifar_core.jobs.keeping import Hidden
from cifar_core.jobs.results import LEADERBOARD_COLUMNS, SYSTEM_COLUMNS


def filter_board(board: pd.DataFrame, name: str = "", statuses: Iterable[str] = (), group: int | None = None,
                 sources: Iterable[str] = ()) -> pd.DataFrame:
    """Leaderboard rows whose name contains `name` (any case), whose status is in `statuses` (all
    if empty), whose data source is in `sources` (all if empty) and, when `group` is given, that
    belong to that group (a sweep or a set of repeats)."""
    keep = pd.Series(True, index=board.index)
    sources = list(sources)
    if sources:
        keep &= board["data_source"].isin(sources)
    if group is not None:
        keep &= board["group"] == group
    if name.strip():
        keep &= board["name"].str.contains(name.strip(), case=False, regex=False)
    statuses = list(statuses)
    if statuses:
        keep &= board["status"].isin(statuses)
    return board[keep]


def column_order(system: bool = False, leading: list[str] | tuple = ()) -> list[str]:
    """The table's columns: the run and its page's link first (then `leading`, e.g. the columns
    against the baseline), the diagnosis last, and what its training process used
    (SYSTEM_COLUMNS) only when asked for."""
    hidden = {"run", *leading, *([] if system else SYSTEM_COLUMNS)}
    return ["run", "open", *leading, *[k for k in LEADERBOARD_COLUMNS if k not in hidden], "diagnosis"]


def still_shown(picked: Iterable[int], shown: Iterable[int], hidden: Hidden) -> tuple[list[int], list[str]]:
    """The picked runs the board still shows, and for each that left it (deleted, archived or
    filtered out since it was picked) why, in words."""
    on_board = {int(r) for r in shown}
    kept, said = [], []
    for run in (int(r) for r in picked):
        if run in on_board:
            kept.append(run)
        elif run in hidden.trashed:
            said.append(f"Run #{run} left the comparison: it is in the trash (restorable until the trash is emptied).")
        elif run in hidden.runs:
            said.append(f"Run #{run} left the comparison: it is archived ('Show archived' shows it).")
        else:
            said.append(f"Run #{run} left the comparison: the filter leaves it out, or it no longer exists.")
    return kept, said
