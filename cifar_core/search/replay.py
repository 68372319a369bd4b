"""What a pruner would have done to a finished sweep: replay its recorded curves through `decide`.

The trials start one at a time in the order they ran (or in seeded shuffles of it), each running
its recorded epochs until the pruner stops it; under successive halving and Hyperband a paused
trial that `promotions` picks resumes first (as asynchronous successive halving does) and runs on
with its recorded curve. A complete trial's last epoch is never judged (nothing left to save); a
trial recorded as pruned or paused is judged at its last recorded epoch too (where a live pruner
stopped it, so a replay of the same pruner agrees with the live run), and stays stopped there
whatever the replayed pruner says (its later epochs were never recorded).
Pure over TrialCurves: no store, no training.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from cifar_core.search.config import COMPLETE, PAUSE, PAUSED, PRUNED, RUNNING, PrunerConfig, TrialCurve
from cifar_core.search.promotion import promotions
from cifar_core.search.pruners import decide


@dataclass(frozen=True)
class ReplayRun:
    """One replay: which trials the pruner stopped, the epochs it saved, and whether the best
    (highest objective among the recorded complete trials) ran to its end."""

    order: tuple[int, ...]  # trial ids in the order they started
    stopped: dict[int, tuple[str, int]]  # trial id -> ("prune" | "pause", epoch it stopped after)
    reasons: dict[int, str]  # trial id -> the decision's reason, for stopped trials
    epochs_recorded: int  # epochs the sweep trained
    epochs_run: int  # epochs it would have trained under the pruner
    best_trial: int | None
    best_survived: bool
    best_kept: float | None  # the best objective among the trials the replay let finish

    @property
    def epochs_saved(self) -> int:
        return self.epochs_recorded - self.epochs_run


@dataclass(frozen=True)
class ReplayResult:
    runs: list[ReplayRun]  # runs[0]: the recorded order; then the shuffles

    @property
    def mean_epochs_saved(self) -> float:
        return sum(r.epochs_saved for r in self.runs) / len(self.runs)

    @property
    def saved_share(self) -> float:
        """The mean share of the recorded epochs saved (0..1)."""
        return sum(r.epochs_saved / max(1, r.epochs_recorded) for r in self.runs) / len(self.runs)

    @property
    def best_survived_share(self) -> float:
        return sum(r.best_survived for r in self.runs) / len(self.runs)


def replay(pruner: PrunerConfig, trials: Sequence[TrialCurve], shuffles: int = 0, seed: int = 0) -> ReplayResult:
    """Replay `pruner` over the recorded `trials` (in the order they ran), then over `shuffles`
    orders shuffled with `seed`."""
    order = [t.trial_id for t in trials]
    orders = [order]
    rng = random.Random(seed)
    for _ in range(shuffles):
        shuffled = list(order)
        rng.shuffle(shuffled)
        orders.append(shuffled)
    recorded = {t.trial_id: t for t in trials}
    return ReplayResult([_replay_once(pruner, recorded, o) for o in orders])


def _replay_once(pruner: PrunerConfig, recorded: dict[int, TrialCurve], order: list[int]) -> ReplayRun:
    sim: dict[int, TrialCurve] = {}
    started: list[int] = []
    waiting = list(order)
    stopped: dict[int, tuple[str, int]] = {}
    reasons: dict[int, str] = {}
    while True:
        now = [sim[i] for i in started]
        ready = [p for p in promotions(pruner, now) if recorded[p.trial_id].last_epoch > p.epoch]
        if ready:
            tid = ready[0].trial_id
            stopped.pop(tid, None)
        elif waiting:
            tid = waiting.pop(0)
            started.append(tid)
        else:
            break
        _run(pruner, recorded[tid], sim, started, stopped, reasons)
    best = _best(recorded.values())
    finished = [sim[i] for i in started if i not in stopped]
    kept = [t.objective for t in finished if t.objective is not None]
    return ReplayRun(
        order=tuple(order),
        stopped=stopped,
        reasons={i: reasons[i] for i in stopped},
        epochs_recorded=sum(t.last_epoch for t in recorded.values()),
        epochs_run=sum(t.last_epoch for t in sim.values()),
        best_trial=best,
        best_survived=best is not None and best not in stopped,
        best_kept=max(kept, default=None),
    )


def _run(pruner, rec: TrialCurve, sim: dict, started: list, stopped: dict, reasons: dict) -> None:
    """Train `rec` on from where the replay left it until the pruner stops it or its record ends."""
    done = sim[rec.trial_id].last_epoch if rec.trial_id in sim else 0
    for epoch in sorted(e for e in rec.curve if e > done):
        last = epoch == rec.last_epoch
        if last and rec.state == COMPLETE:  # it ran to its end: nothing left to save
            sim[rec.trial_id] = rec.upto(epoch, COMPLETE)
            return
        sim[rec.trial_id] = rec.upto(epoch, RUNNING)
        decision = decide(pruner, [sim[i] for i in started], rec.trial_id, epoch)
        if decision.stops:
            sim[rec.trial_id] = rec.upto(epoch, PAUSED if decision.action == PAUSE else PRUNED)
            stopped[rec.trial_id] = (decision.action, epoch)
            reasons[rec.trial_id] = decision.reason
            return
        if last:  # stopped where its record ends (a live pruner did it); this one would have gone on
            sim[rec.trial_id] = rec.upto(epoch, PRUNED)
            return


def _best(trials) -> int | None:
    done = [t for t in trials if t.state == COMPLETE and t.objective is not None]
    if not done:
        return None
    return max(done, key=lambda t: t.objective).trial_id
