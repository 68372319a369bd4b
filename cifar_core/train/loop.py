"""Train one experiment from its spec. No store access here: the caller passes a `Reporter`, so
a cluster backend can run this same function on another machine and forward what it reports.
Nor does it measure what the model costs to run: that belongs to the machine that serves it, so
the caller measures the saved model (`cifar_core.train.latency.measure_cost`).

Resuming: per-epoch checkpoints live in `workdir/backup` (see `cifar_core.train.checkpoint`);
calling `train` again with the same workdir and spec continues after the last completed epoch.
The reporter's `epoch_end` runs before the checkpoint is written, so an epoch is never
checkpointed without having been reported; a re-run epoch is reported again and the store
replaces it.

Imports Keras: the worker imports this module only when it trains.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from cifar_core.data.dataset import Dataset, holdout_split
from cifar_core.spec.schema import ExperimentSpec
from cifar_core.train import augment, averaging, whitening
from cifar_core.train.atomic import write_json
from cifar_core.train.checkpoint import check_same_spec, read_checkpoint
from cifar_core.train.models import build_model, compile_model, uses_one_hot
from cifar_core.train.phases import SAVING, SCORING
from cifar_core.train.relay import Reporter, ReporterRelay
from cifar_core.train.resume import Checkpoint, ResumableEarlyStopping, restore_weights

COMPLETED = "completed"
STOPPED = "stopped"  # the reporter asked to stop (cancel, shutdown, lost lease)


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


@dataclass(frozen=True)
class Splits:
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray


def limit_threads(threads: int) -> None:
    """Give this process's TensorFlow `threads` intra-op threads (and up to 2 inter-op): a job's
    share of the cores. Must run before TensorFlow's first op, so each job's process calls it first."""
    import tensorflow as tf

    threads = max(1, int(threads))
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(min(2, threads))


def make_splits(spec: ExperimentSpec, ds: Dataset) -> Splits:
    """Notebook style validates on the test set; holdout keeps 5,000 train images aside; none (a
    refit) trains on every training image and validates on nothing."""
    if spec.validation == "test":
        return Splits(ds.x_train, ds.y_train, ds.x_test, ds.y_test)
    if spec.validation == "none":
        return Splits(ds.x_train, ds.y_train, ds.x_train[:0], ds.y_train[:0])
    train_idx, val_idx = holdout_split(ds)
    return Splits(ds.x_train[train_idx], ds.y_train[train_idx], ds.x_train[val_idx], ds.y_train[val_idx])


def train(spec: ExperimentSpec, ds: Dataset, workdir: Path, reporter: Reporter) -> TrainOutcome:
    """Train `spec` on `ds`, writing checkpoints and final files under `workdir`. A checkpoint
    there made with another spec is refused (LabError naming the differences)."""
    started = time.monotonic()
    workdir.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(spec.seed)
    splits = make_splits(spec, ds)
    one_hot = uses_one_hot(spec)
    steps = math.ceil(len(splits.x_train) / spec.batch_size)
    state = read_checkpoint(workdir)
    first_epoch = state.epoch if state else 0
    train_data = augment.train_dataset(splits.x_train, splits.y_train, spec.batch_size, spec.augment, spec.seed,
                                       ds.num_classes, one_hot, epochs=range(min(first_epoch, spec.epochs - 1), spec.epochs))
    val_batch = max(spec.batch_size, 256)
    val_data = augment.eval_dataset(splits.x_val, splits.y_val, val_batch, ds.num_classes, one_hot) \
        if len(splits.x_val) else None
    model = build_model(spec, ds.input_shape, ds.num_classes)
    compile_model(model, spec, steps)
    extras = [*whitening.prepare(model, splits.x_train, spec.seed), *averaging.callbacks(spec)]  # whitening: train split only

    relay = ReporterRelay(reporter, steps, workdir / "history.json", math.ceil(len(splits.x_val) / val_batch))
    early = ResumableEarlyStopping(spec.early_stopping, relay) if spec.early_stopping else None
    if state is not None:
        check_same_spec(state, spec.to_dict())
        restore_weights(model, state)
        if early is not None and state.best_weights is not None:  # else a checkpoint from before best weights were kept
            early.resume(model, [h for h in relay.history if h["epoch"] <= state.epoch], state.best_weights)
    if early is not None and early.stopped_epoch > 0:  # it had stopped; the kill came while the test set was scored
        model.set_weights(early.best_weights)
    else:
        backup = Checkpoint(workdir, spec.to_dict(), relay, early)
        callbacks = [*extras, relay, early, backup] if early is not None else [*extras, relay, backup]  # in this order
        model.fit(
            train_data, validation_data=val_data, epochs=spec.epochs, initial_epoch=first_epoch,
            steps_per_epoch=steps if augment.alternates(spec.augment) else None,  # one dataset through all epochs
            callbacks=callbacks, verbose=0, shuffle=False,
        )

    history = relay.history
    if relay.stopped:
        return TrainOutcome(STOPPED, history, model.count_params(), time.monotonic() - started)
    return _finish(spec, ds, model, workdir, history, early, time.monotonic() - started, reporter)


def _finish(spec, ds, model, workdir: Path, history, early, seconds: float, reporter: Reporter) -> TrainOutcome:
    """Score the test set once, save the model, predictions and history."""
    reporter.phase(SCORING, 0, len(augment.tta_views(spec.tta_flip, spec.tta_shift)))
    probs = augment.predict_probs(model, ds.x_test, tta_flip=spec.tta_flip, tta_shift=spec.tta_shift)
    test_loss, test_accuracy = _scores(probs, ds.y_test)
    files = {
        "model": str(workdir / "model.keras"),
        "predictions": str(workdir / "predictions.npz"),
        "history": str(workdir / "history.json"),
        "spec": str(workdir / "spec.json"),
    }
    reporter.phase(SAVING)
    model.save(files["model"])
    # The classes as scored, from the full-precision probabilities: float16 can tie or swap the top
    # two of a close call, and the stored accuracy must be the test accuracy recorded.
    np.savez(files["predictions"], probs=probs.astype(np.float16), y_pred=probs.argmax(axis=1).astype(np.int16),
             y_true=ds.y_test)
    write_json(workdir / "spec.json", spec.to_dict())
    # The checkpoint stays: the consumer drops it once the store says succeeded (jobs/attempt.py).
    stopped_epoch = stop_reason = None
    if early is not None and early.stopped_epoch > 0:
        stopped_epoch = early.stopped_epoch + 1
        stop_reason = (
            f"early stopping: no {early.monitor} improvement for {early.patience} epochs; "
            f"weights restored from epoch {early.best_epoch + 1}"
        )
    return TrainOutcome(
        COMPLETED, history, model.count_params(), seconds, test_loss, test_accuracy, stopped_epoch, stop_reason, files
    )


def _scores(probs: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    picked = np.clip(probs[np.arange(len(y)), y], 1e-7, 1.0)
    return float(-np.log(picked).mean()), float((probs.argmax(axis=1) == y).mean())
