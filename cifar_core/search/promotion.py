"""Which paused trials to resume: under successive halving or Hyperband, a trial paused at a rung
goes on once it ranks in the top 1/eta of the values recorded at that rung (asynchronous successive
halving: more trials reaching the rung below it make room). Pure over the sweep's TrialCurves."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cifar_core.search.config import PAUSED, RUNG_PRUNERS, PrunerConfig, TrialCurve
from cifar_core.search.pruners import RungStudy, ordinal, pct, rung_epoch, rung_key, standing


@dataclass(frozen=True)
class Promotion:
    """A paused trial to resume, trained on from `epoch` to the next rung, `to_epoch`."""

    trial_id: int
    rung: int  # the rung it paused at (0 = the first)
    epoch: int  # the epoch it paused after
    to_epoch: int  # the next rung's epoch (at most max_epochs)
    value: float  # its validation accuracy at the rung
    reason: str  # "trial 7: 66.0% now ranks 2nd of 9 at rung 0 (epoch 1), in the top 1/3 (3): resume to epoch 3"


def promotions(pruner: PrunerConfig, trials: Sequence[TrialCurve]) -> list[Promotion]:
    """The paused trials that now rank in the top 1/eta of their rung, best first; [] for pruners
    that never pause. `trials` are the sweep's trials in the order they started."""
    if pruner.kind not in RUNG_PRUNERS:
        return []
    rs = RungStudy(pruner, trials)
    at_rung: dict[tuple[int, int], list[float]] = {}  # (bracket, rung) -> the values recorded there
    found = []
    for i, t in enumerate(trials):
        if t.state != PAUSED:
            continue
        attrs = rs.frozen(i).system_attrs
        rung = sum(1 for r in range(len(attrs) + 1) if rung_key(r) in attrs) - 1
        if rung < 0:
            continue  # paused before its first rung: nothing to rank it by
        value, bracket = attrs[rung_key(rung)], rs.brackets[i]
        if (bracket, rung) not in at_rung:
            at_rung[bracket, rung] = rs.rung_values(bracket, rung)
        s = standing(value, at_rung[bracket, rung], pruner.eta)
        if not s.goes_on:
            continue
        to_epoch = rung_epoch(pruner, bracket, rung + 1)
        if pruner.max_epochs is not None:
            to_epoch = min(to_epoch, pruner.max_epochs)
        reason = (
            f"trial {t.trial_id}: {pct(value)} now ranks {ordinal(s.rank)} of {s.of} at rung {rung}{rs.where(i)} "
            f"(epoch {t.last_epoch}), in the top 1/{pruner.eta} ({s.top}): resume to epoch {to_epoch}"
        )
        found.append(Promotion(t.trial_id, rung, t.last_epoch, to_epoch, value, reason))
    return sorted(found, key=lambda p: -p.value)
