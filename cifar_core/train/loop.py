"""Train one experiment from its spec. No store access here: the caller passes a `Reporter`, so
a cluster backend can run this same function on another machine and forward what it reports.

Resuming: per-epoch checkpoints live in `workdir/backup`; calling
`train` again with the same workdir continues after the last completed epoch. The reporter's
`epoch_end` runs before the checkpoint is written, so an epoch is never checkpointed without
having been reported; a re-run epoch is reported again and the store replaces it.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from cifar_core.data.sources import Dataset, holdout_split
from cifar_core.spec.schema import ExperimentSpec

COMPLETED = "completed"
STOPPED = "stopped"  # the reporter asked to stop (cancel, shutdown, lost lease)


class Reporter(Protocol):
    def epoch_end(self, record: dict) -> None:
        """One finished epoch: epoch (1-based), loss, accuracy, val_loss, val_accuracy, seconds, learning_rate."""

    def progress(self, epoch: int, batch: int, batches: int) -> None:
        """Called after every batch; must be cheap (the reporter decides how often to publish)."""

    def should_stop(self) -> bool:
        """Checked after every batch; must be cheap."""


@dataclass(frozen=True)
class TrainOutcome:
    status: str  # COMPLETED | STOPPED
    history: list[dict]
    params: int
    train_seconds: float
    test_loss: float | None = None
    test_accuracy: float | None = None
    stopped_epoch: int | None = None  # early stopping: the epoch training ended at
    stop_reason: str | None = None
    files: dict[str, str] = field(default_factory=dict)
    cost: dict = field(default_factory=dict)  # model_bytes, latency_p50_ms, latency_p95_ms, throughput_ips


@dataclass(frozen=True)
class Splits:
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray


def make_splits(spec: ExperimentSpec, ds: Dataset) -> Splits:
    """Notebook style validates on the test set; holdout keeps 5,000 train images aside."""
    if spec.validation == "test":
        return Splits(ds.x_train, ds.y_train, ds.x_test, ds.y_test)
    train_idx, val_idx = holdout_split(ds)
    return Splits(ds.x_train[train_idx], ds.y_train[train_idx], ds.x_train[val_idx], ds.y_train[val_idx])


def train(spec: ExperimentSpec, ds: Dataset, workdir: Path, reporter: Reporter) -> TrainOutcome:
    """Train `spec` on `ds`, writing checkpoints and final files under `workdir`."""
    import keras

    from cifar_core.train import augment
    from cifar_core.train.models import build_model, compile_model, uses_one_hot

    started = time.monotonic()
    workdir.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(spec.seed)
    splits = make_splits(spec, ds)
    one_hot = uses_one_hot(spec)
    steps = math.ceil(len(splits.x_train) / spec.batch_size)
    train_data = augment.train_dataset(
        splits.x_train, splits.y_train, spec.batch_size, spec.augment, spec.seed, ds.num_classes, one_hot
    )
    val_data = augment.eval_dataset(splits.x_val, splits.y_val, max(spec.batch_size, 256), ds.num_classes, one_hot)
    model = build_model(spec, ds.input_shape, ds.num_classes)
    compile_model(model, spec, steps)

    relay, early, backup = _callbacks(reporter, steps, workdir, spec.early_stopping)
    callbacks = [relay, early, backup] if early is not None else [relay, backup]
    model.fit(train_data, validation_data=val_data, epochs=spec.epochs, callbacks=callbacks, verbose=0, shuffle=False)

    history = relay.history
    if relay.stopped:
        return TrainOutcome(STOPPED, history, model.count_params(), time.monotonic() - started)
    return _finish(spec, ds, model, workdir, history, early, time.monotonic() - started)


def _finish(spec, ds, model, workdir: Path, history, early, seconds: float) -> TrainOutcome:
    """Score the test set once, save the model, predictions and history, drop the checkpoint."""
    from cifar_core.train import augment

    probs = augment.predict_probs(model, ds.x_test, tta_flip=spec.tta_flip, tta_shift=spec.tta_shift)
    test_loss, test_accuracy = _scores(probs, ds.y_test)
    files = {
        "model": str(workdir / "model.keras"),
        "predictions": str(workdir / "predictions.npz"),
        "history": str(workdir / "history.json"),
        "spec": str(workdir / "spec.json"),
    }
    model.save(files["model"])
    cost = measure_cost(model, ds.input_shape, Path(files["model"]))
    np.savez(files["predictions"], probs=probs.astype(np.float16), y_true=ds.y_test)
    _write_json(workdir / "spec.json", spec.to_dict())
    shutil.rmtree(workdir / "backup", ignore_errors=True)
    stopped_epoch = stop_reason = None
    if early is not None and early.stopped_epoch > 0:
        stopped_epoch = early.stopped_epoch + 1
        stop_reason = (
            f"early stopping: no {early.monitor} improvement for {early.patience} epochs; "
            f"weights restored from epoch {early.best_epoch + 1}"
        )
    return TrainOutcome(
        COMPLETED, history, model.count_params(), seconds, test_loss, test_accuracy, stopped_epoch, stop_reason, files,
        cost,
    )


def measure_cost(model, input_shape, model_path: Path) -> dict:
    """What the model costs to run here: file size, batch-1 latency (p50/p95), batch-256 throughput."""
    from cifar_core.analysis.deploy import measure_latency, model_file_size

    latency = measure_latency(model, input_shape, batch1_repeats=100, warmup=10, throughput_repeats=3)
    return {
        "model_bytes": model_file_size(model_path),
        "latency_p50_ms": latency.p50_ms,
        "latency_p95_ms": latency.p95_ms,
        "throughput_ips": latency.throughput_ips,
    }


def _scores(probs: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    picked = np.clip(probs[np.arange(len(y)), y], 1e-7, 1.0)
    return float(-np.log(picked).mean()), float((probs.argmax(axis=1) == y).mean())


def _read_history(path: Path) -> list[dict]:
    return json.loads(path.read_text()) if path.exists() else []


def _write_json(path: Path, value) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value, indent=1))
    tmp.replace(path)


def discard_checkpoint(workdir: Path) -> None:
    shutil.rmtree(workdir / "backup", ignore_errors=True)


def _callbacks(reporter: Reporter, steps: int, workdir: Path, early_stopping: dict | None):
    """The relay to the reporter, early stopping (None when off) and the per-epoch checkpoint,
    built lazily (no Keras at import). Fit must call them in that order.

    The relay keeps `workdir/history.json` (one record per epoch, re-run epochs replaced) so a
    resumed run returns its whole history without asking the store. Early stopping's state
    survives a resume too: its best weights are checkpointed, and the rest is replayed from the
    history of the checkpointed epochs.
    """
    import keras

    history_path = workdir / "history.json"

    class ReporterCallback(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.stopped = False
            self.history = _read_history(history_path)
            self._epoch = 0
            self._t0 = 0.0

        def on_epoch_begin(self, epoch, logs=None):
            self._epoch = epoch
            self._t0 = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            reporter.progress(self._epoch, batch + 1, steps)
            if reporter.should_stop():
                self.stopped = True
                self.model.stop_training = True

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
            _write_json(history_path, self.history)
            reporter.epoch_end(record)

    relay = ReporterCallback()

    class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
        """Keras's EarlyStopping (restoring the best weights) that carries on where a resumed run
        left off instead of starting its patience and best weights afresh."""

        def on_train_begin(self, logs=None):
            super().on_train_begin(logs)
            state = backup.state()
            if state is None or "best" not in state:
                return  # a fresh run, or a checkpoint from before best weights were kept
            for record in relay.history:
                if record["epoch"] <= state["epoch"]:
                    super().on_epoch_end(record["epoch"] - 1, {self.monitor: record[self.monitor]})
            with np.load(backup.folder / state["best"]) as arrays:
                self.best_weights = [arrays[f"arr_{i}"] for i in range(len(arrays.files))]
            self.model.stop_training = False
            if self.stopped_epoch > 0:  # it had stopped, and the kill came while the test set was scored
                self.model._initial_epoch = self.params["epochs"]

        def on_epoch_end(self, epoch, logs=None):
            if relay.stopped:
                return
            super().on_epoch_end(epoch, logs)
            if self.best_epoch == epoch:
                path = backup.folder / _best_weights_name(epoch + 1)
                backup.folder.mkdir(parents=True, exist_ok=True)
                with open(path.with_suffix(".tmp"), "wb") as f:
                    np.savez(f, *self.best_weights)
                path.with_suffix(".tmp").replace(path)

    class Checkpoint(keras.callbacks.Callback):
        """Per-epoch checkpoint that a kill at any moment leaves usable: each epoch's weights go to
        a new file, then `checkpoint.json` is switched to it by an atomic rename, then older
        files are removed. (Keras's BackupAndRestore overwrites one weights file in place, which
        a SIGKILL mid-write leaves corrupt.) With early stopping on, the pointer also names the
        best epoch's weights."""

        def __init__(self, folder: Path) -> None:
            super().__init__()
            self.folder = folder
            self.pointer = folder / "checkpoint.json"

        def state(self) -> dict | None:
            return json.loads(self.pointer.read_text()) if self.pointer.exists() else None

        def on_train_begin(self, logs=None):
            state = self.state()
            if state is None:
                return
            if not self.model.optimizer.built:
                self.model.optimizer.build(self.model.trainable_variables)  # its state is in the file too
            self.model.load_weights(self.folder / state["weights"])
            self.model._initial_epoch = max(self.model._initial_epoch or 0, state["epoch"])  # as BackupAndRestore

        def on_epoch_end(self, epoch, logs=None):
            if relay.stopped:  # never checkpoint a half-trained epoch as done
                return
            self.folder.mkdir(parents=True, exist_ok=True)
            name = f"epoch-{epoch + 1:04d}.weights.h5"
            self.model.save_weights(self.folder / name)
            state = {"epoch": epoch + 1, "weights": name}
            if early is not None and early.best_weights is not None:  # None until the monitor has a value
                state["best"] = _best_weights_name(early.best_epoch + 1)
            _write_json(self.pointer, state)
            for old in [*self.folder.glob("epoch-*.weights.h5"), *self.folder.glob("best-*.npz")]:
                if old.name not in state.values():
                    old.unlink()

    backup = Checkpoint(workdir / "backup")
    early = None
    if early_stopping:
        monitor = early_stopping.get("monitor", "val_accuracy")
        early = ResumableEarlyStopping(
            monitor=monitor,
            mode="max" if "acc" in monitor else "min",  # known now, so a resume can replay before metrics exist
            patience=int(early_stopping.get("patience", 5)),
            min_delta=float(early_stopping.get("min_delta", 0.0)),
            restore_best_weights=True,
        )
    return relay, early, backup


def _best_weights_name(epoch: int) -> str:
    return f"best-{epoch:04d}.npz"


def _f(value) -> float | None:
    return None if value is None else float(np.asarray(value))
