"""The rungs of a sweep under successive halving or Hyperband: which trials reached which rung,
with their value there, and what happened next. Pure over TrialCurves, like `promotion`.

A trial is judged when it records a rung's epoch (asynchronous successive halving, as Optuna runs
it): in the top 1/eta of the values its bracket recorded at that rung so far, it goes on; if not,
it pauses, and goes on later only if promoted. So a trial that trained past a rung "went on" if it
ranked in the top when it got there (among the values recorded no later than its own: `times`
gives when each epoch was recorded; without it, the start order) and was "promoted" otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cifar_core.search.config import COMPLETE, PAUSED, PRUNED, RUNG_PRUNERS, PrunerConfig, TrialCurve
from cifar_core.search.pruners import RungStudy, rung_epoch, rung_key, standing

WENT_ON, PROMOTED, PAUSED_HERE, PRUNED_HERE, COMPLETED, JUDGED = (
    "went on", "promoted", "paused", "pruned", "completed", "being judged")


@dataclass(frozen=True)
class RungEntry:
    trial_id: int
    bracket: int  # Hyperband's bracket (successive halving: 0)
    rung: int  # 0 = the first
    epoch: int  # the epoch whose value counts at the rung
    value: float
    outcome: str  # went on | promoted | paused | pruned | completed | being judged


def rung_entries(
    pruner: PrunerConfig, trials: Sequence[TrialCurve], times: Mapping[int, Mapping[int, float]] | None = None
) -> list[RungEntry]:
    """One entry per (trial, rung it reached), in the trials' order then by rung; [] for pruners
    without rungs. `trials` in the order they started; `times`: trial id -> {epoch: when recorded}."""
    if pruner.kind not in RUNG_PRUNERS:
        return []
    rs = RungStudy(pruner, trials)
    reached: list[list[tuple[int, int, float, float]]] = []  # per trial: (rung, epoch, value, when)
    for i, t in enumerate(trials):
        attrs, rows, rung = rs.frozen(i).system_attrs, [], 0
        while rung_key(rung) in attrs:
            epoch = min(e for e in t.curve if e >= rung_epoch(pruner, rs.brackets[i], rung))
            when = (times or {}).get(t.trial_id, {}).get(epoch, float(i))
            rows.append((rung, epoch, attrs[rung_key(rung)], when))
            rung += 1
        reached.append(rows)
    out = []
    for i, t in enumerate(trials):
        for rung, epoch, value, when in reached[i]:
            if t.last_epoch > epoch:
                then = [v for j, rows in enumerate(reached) if rs.brackets[j] == rs.brackets[i]
                        for r, _, v, w in rows if r == rung and (w, j) <= (when, i)]
                outcome = WENT_ON if standing(value, then, pruner.eta).goes_on else PROMOTED
            else:
                outcome = {PAUSED: PAUSED_HERE, PRUNED: PRUNED_HERE, COMPLETE: COMPLETED}.get(t.state, JUDGED)
            out.append(RungEntry(t.trial_id, rs.brackets[i], rung, epoch, value, outcome))
    return out
