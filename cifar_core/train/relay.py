"""What a training run tells its caller: the `Reporter` protocol `train` is given, and the Keras
callback that relays every batch, validation batch and finished epoch to it.

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

from cifar_core.train.atomic import write_json
from cifar_core.train.phases import TRAINING, VALIDATING
from cifar_core.train.sysmetrics import EpochMeter


class Reporter(Protocol):
    def epoch_end(self, record: dict) -> bool | None:
        """One finished epoch: epoch (1-based), loss, accuracy, val_loss, val_accuracy, seconds
        (training and validation), val_seconds (validation alone), learning_rate, and what the
        training process used meanwhile (train/sysmetrics.py): cpu_seconds (over `seconds`),
        peak_rss_bytes (since training began), cpu_model, cores. Returning False
        says it could not be kept (the job was lost): the run then stops without checkpointing
        that epoch."""

    def progress(self, epoch: int, batch: int, batches: int, *, loss: float | None = None,
                 accuracy: float | None = None) -> None:
        """Called with batch 0 before each epoch (the reporter may wait there, e.g. for disk space),
        then after every batch with the epoch's running mean loss and accuracy so far; must be
        cheap (the reporter decides how often to publish)."""

    def phase(self, name: str, step: int = 0, steps: int = 0) -> None:
        """What the run does now (a `cifar_core.train.phases` name): TRAINING before each epoch,
        VALIDATING batch `step` of `steps` inside it, then SCORING (`steps` test-time views) and
        SAVING once at the end. Called after every validation batch, so it must be cheap."""

    def should_stop(self) -> bool:
        """Checked after every training and validation batch; must be cheap."""

    # Optional: `checkpoint_saved(epoch)` is called once the checkpoint of that finished epoch is
    # on disk (a cluster task sends it to the dispatcher then).


class ReporterRelay(keras.callbacks.Callback):
    """Relays batches and finished epochs to `reporter` and stops fit when it asks. `stopped` tells
    the other callbacks that the epoch now ending is partial and must not count."""

    def __init__(self, reporter: Reporter, steps: int, history_path: Path, val_steps: int = 0) -> None:
        super().__init__()
        self.reporter = reporter
        self.steps = steps  # batches per epoch
        self.val_steps = val_steps  # validation batches per epoch
        self.history_path = history_path
        self.history: list[dict] = json.loads(history_path.read_text()) if history_path.exists() else []
        self.stopped = False
        self._epoch = 0
        self._t0 = 0.0
        self._val_t0: float | None = None
        self._val_seconds: float | None = None
        self._meter = EpochMeter()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._val_t0 = self._val_seconds = None
        self.reporter.phase(TRAINING)
        self.reporter.progress(epoch, 0, self.steps)
        self._meter.begin()
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}  # Keras passes the epoch's running means, already Python floats
        self.reporter.progress(self._epoch, batch + 1, self.steps, loss=logs.get("loss"), accuracy=logs.get("accuracy"))
        if self.reporter.should_stop():
            self.stopped = True
            self.model.stop_training = True

    def on_test_begin(self, logs=None):  # fit's validation, inside the epoch (before on_epoch_end)
        self._val_t0 = time.perf_counter()
        self.reporter.phase(VALIDATING, 0, self.val_steps)

    def on_test_batch_end(self, batch, logs=None):
        self.reporter.phase(VALIDATING, batch + 1, self.val_steps)
        if self.reporter.should_stop():  # a cancel during validation stops it too; the epoch stays unfinished
            self.stopped = True
            self.model.stop_training = self.model.stop_evaluating = True

    def on_test_end(self, logs=None):
        if self._val_t0 is not None:
            self._val_seconds = time.perf_counter() - self._val_t0

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
            "seconds": time.perf_counter() - self._t0,  # training and validation
            "val_seconds": self._val_seconds,  # the validation part of it
            "learning_rate": _f(self.model.optimizer.learning_rate),
            **self._meter.end(),
        }
        self.history = [h for h in self.history if h["epoch"] < record["epoch"]] + [record]
        write_json(self.history_path, self.history)
        self.reporter.phase(TRAINING)  # the epoch is done: what follows is the next one (or the end phases)
        if self.reporter.epoch_end(record) is False:
            self.stopped = True
            self.model.stop_training = True


def _f(value) -> float | None:
    return None if value is None else float(np.asarray(value))
