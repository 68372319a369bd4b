"""A Reporter for `train()` called in the test process: it keeps what a run tells it."""

from __future__ import annotations


class Recorder:
    """A real Reporter that keeps what it is told and can ask to stop after some epochs."""

    def __init__(self, stop_after: int | None = None):
        self.epochs: list[dict] = []
        self.progress_calls = 0
        self.running: list[tuple] = []  # (epoch, batch, loss, accuracy) after each batch
        self.phases: list[tuple] = []  # (name, step, steps) as told, repeats collapsed
        self.stop_after = stop_after

    def epoch_end(self, record: dict) -> None:
        self.epochs.append(record)

    def progress(self, epoch: int, batch: int, batches: int, *, loss=None, accuracy=None) -> None:
        self.progress_calls += 1
        assert 0 <= batch <= batches  # batch 0: before the epoch's first batch
        if batch:
            self.running.append((epoch, batch, loss, accuracy))

    def phase(self, name: str, step: int = 0, steps: int = 0) -> None:
        if not self.phases or self.phases[-1] != (name, step, steps):
            self.phases.append((name, step, steps))

    def should_stop(self) -> bool:
        return self.stop_after is not None and len(self.epochs) >= self.stop_after
