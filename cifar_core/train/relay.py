"""What a training run tells its caller: the `Reporter` protocol `train` is given, and the Keras
callback that relays every batch and finished epoch to it.

The relay also keeps `workdir/history.json` (one record per epoch, re-run epochs replaced), so a
resumed run returns its whole history without asking the store. It must come first in fit's
callbacks: its `epoch_end` runs before the checkpoint is written, so an epoch is never
checkpointed without having been reported.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Protocol

import keras
import numpy as np

from cifar_core.train.checkpoint import write_json


class Reporter(Protocol):
    def epoch_end(self, record: dict) -> bool | None:
        """One finished epoch: epoch (1-based), loss, accuracy, val_loss, val_accuracy, seconds,
        learning_rate. Returning False says it could not be kept (the job was lost): the run then
        stops without checkpointing that epoch."""

    def progress(self, epoch: int, batch: int, batches: int) -> None:
        """Called with batch 0 before each epoch (the reporter may wait there, e.g. for disk space),
        then after every batch; must be cheap (the reporter decides how often to publish)."""

    def should_stop(self) -> bool:
        """Checked after every training and validation batch; must be cheap."""

    # Optional: `checkpoint_saved(epoch)` is called once the checkpoint of that finished epoch is
    # on disk (a cluster task sends it to the dispatcher then).


class ReporterRelay(keras.callbacks.Callback):
    """Relays batches and finished epochs to `reporter` and stops fit when it asks. `stopped` tells
    the other callbacks that the epoch now ending is partial and must not count."""

    def __init__(self, reporter: Reporter, steps: int, history_path: Path) -> None:
        super().__init__()
        self.reporter = reporter
        self.steps = steps  # batches per epoch
        self.history_path = history_path
        self.history: list[dict] = json.loads(history_path.read_text()) if history_path.exists() else []
        self.stopped = False
        self._epoch = 0
        self._t0 = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self.reporter.progress(epoch, 0, self.steps)
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.reporter.progress(self._epoch, batch + 1, self.steps)
        if self.reporter.should_stop():
            self.stopped = True
            self.model.stop_training = True

    def on_test_batch_end(self, batch, logs=None):
        if self.reporter.should_stop():  # a cancel during validation stops it too; the epoch stays unfinished
            self.stopped = True
            self.model.stop_training = self.model.stop_evaluating = True

    def on_epoch_end(self, epoch, logs=None):
        if self.stopped:
            return  # a partial epoch is not a finished epoch
        logs = logs or {}
        record = {
            "epoch": epoch + 1,
            "loss": _f(logs.get("loss")),
            "accuracy": _f(logs.get("accuracy")),
            "val_loss": _f(logs.get("val_loss")),
            "val_accuracy": _f(logs.get("val_accuracy")),
            "seconds": time.perf_counter() - self._t0,
            "learning_rate": _f(self.model.optimizer.learning_rate),
        }
        self.history = [h for h in self.history if h["epoch"] < record["epoch"]] + [record]
        write_json(self.history_path, self.history)
        if self.reporter.epoch_end(record) is False:
            self.stopped = True
            self.model.stop_training = True


def _f(value) -> float | None:
    return None if value is None else float(np.asarray(value))
