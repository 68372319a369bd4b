"""A testing knob that makes what a training process publishes independent of its speed.

By default a job's heartbeat publishes a running point every few seconds and the phase once a
second, so what the store shows of a short epoch depends on how fast the machine trains. Tests
set `$CIFAR_LAB_PACE` (inherited by workers and their training processes) to decide instead:

- `points=N`: a running point after every N-th batch of an epoch (never its last), and every
  change of phase, is handed to the heartbeat at once and training waits until it is stored:
  the same points and phases on any machine, whatever its speed.
- `hold=PHASE:EPOCH:STEP` (any number of them): training waits at that place (`training:2:5`,
  batch 5 of epoch 2; `validating:2:3`, validation batch 3 of epoch 2; `scoring:1:0`, the test
  scoring after a one-epoch run) until it is released, or killed, or (in training and
  validation, which obey a stop at every batch) told to stop: a cancel, a shutdown, the loss of
  its lease. With `release=DIR`, a file `DIR/PHASE-EPOCH-STEP` releases it. So a test acts in
  the middle of a run, and says when the run goes on.

Unset, nothing waits: this is not for production use.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from cifar_core.errors import LabError

PACE_ENV = "CIFAR_LAB_PACE"


@dataclass(frozen=True)
class Pace:
    point_batches: int = 0  # 0: running points by time, the heartbeat's own pace
    holds: tuple[tuple[str, int, int], ...] = ()  # (phase name, epoch 1-based, batch or validation step)
    release: str | None = None  # a folder where a file named for a hold releases it

    @property
    def lockstep(self) -> bool:
        return self.point_batches > 0

    def point_due(self, batch: int, batches: int) -> bool:
        return self.lockstep and 0 < batch < batches and batch % self.point_batches == 0

    def holds_at(self, phase: str, epoch: int, step: int) -> bool:
        return (phase, epoch, step) in self.holds

    def released(self, phase: str, epoch: int, step: int) -> bool:
        return self.release is not None and os.path.exists(os.path.join(self.release, f"{phase}-{epoch}-{step}"))


def pace_from_env() -> Pace:
    raw = os.environ.get(PACE_ENV, "").strip()
    return parse_pace(raw) if raw else Pace()


def parse_pace(raw: str) -> Pace:
    """`points=N,hold=PHASE:EPOCH:STEP,...,release=DIR` (each part may be left out) as a Pace."""
    fields: dict = {"holds": ()}
    for part in filter(None, (p.strip() for p in raw.split(","))):
        key, _, value = part.partition("=")
        try:
            if key == "points" and int(value) > 0:
                fields["point_batches"] = int(value)
                continue
            if key == "hold":
                phase, epoch, step = value.split(":")
                fields["holds"] += ((phase, int(epoch), int(step)),)
                continue
            if key == "release" and value:
                fields["release"] = value
                continue
        except ValueError:
            pass
        raise LabError(f"{PACE_ENV}={raw!r}: {part!r} is neither points=N (N > 0) nor hold=PHASE:EPOCH:STEP nor release=DIR; "
                       f"unset {PACE_ENV} outside tests")
    return Pace(**fields)
