"""Curves of several runs (and the notebook's recorded ones) on shared axes, optionally smoothed as
TensorBoard's slider does: one long frame to overlay. Plain pandas, no drawing."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import pandas as pd

# metric -> (train column, validation column or None) of a run history
METRICS: dict[str, tuple[str, str | None]] = {
    "accuracy": ("accuracy", "val_accuracy"),
    "loss": ("loss", "val_loss"),
    "learning_rate": ("learning_rate", None),
    "seconds": ("seconds", None),
}
SPLITS = ("train", "val")


def smooth(series: pd.Series | Iterable[float], alpha: float) -> pd.Series:
    """Exponential moving average; `alpha` in [0, 1) is the weight of the past (0: unchanged,
    0.9: heavy), as TensorBoard's smoothing slider. Missing values are skipped, not spread."""
    if not 0 <= alpha < 1:
        raise ValueError(f"smoothing alpha={alpha!r} is out of range [0, 1); 0 turns it off, 0.6 is moderate")
    series = pd.Series(series, dtype="float64")
    if alpha == 0 or series.empty:
        return series
    return series.ewm(alpha=1 - alpha, adjust=False, ignore_na=True).mean().where(series.notna())


def curves(
    history: pd.DataFrame,
    metric: str,
    alpha: float = 0.0,
    splits: Iterable[str] = SPLITS,
    labels: Mapping[int, str] | None = None,
) -> pd.DataFrame:
    """Long frame (run, label, split, epoch, value, raw) of one metric of several runs, ready to
    overlay: `history` is `results.histories(...)`; `raw` keeps the unsmoothed value."""
    if metric not in METRICS:
        raise ValueError(f"metric {metric!r} is unknown: use one of {', '.join(METRICS)}")
    columns = dict(zip(SPLITS, METRICS[metric]))
    wanted = [s for s in splits if columns.get(s)]
    parts = []
    for run, frame in history.sort_values(["run", "epoch"]).groupby("run", sort=False):
        for split in wanted:
            raw = frame[columns[split]].astype("float64").reset_index(drop=True)
            parts.append(pd.DataFrame({
                "run": int(run), "label": (labels or {}).get(int(run), f"#{int(run)}"), "split": split,
                "epoch": frame["epoch"].to_numpy(), "value": smooth(raw, alpha).to_numpy(), "raw": raw.to_numpy(),
            }))
    if not parts:
        return pd.DataFrame(columns=["run", "label", "split", "epoch", "value", "raw"])
    return pd.concat(parts, ignore_index=True)
