"""The Keras side of a run's checkpoint (`train/checkpoint.py` holds its files): the callback that
writes it after every epoch, early stopping that carries on where a resumed run left off, and
loading the checkpointed weights back."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import keras
import numpy as np

from cifar_core.train.atomic import write_json
from cifar_core.train.checkpoint import FOLDER, POINTER, SPEC, CheckpointState

if TYPE_CHECKING:
    from cifar_core.train.relay import ReporterRelay


def restore_weights(model, state: CheckpointState) -> None:
    """Load the checkpointed weights into a compiled `model`, optimizer state included."""
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)  # its state is in the file too
    model.load_weights(state.weights)


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """Keras's EarlyStopping (restoring the best weights) that carries on where a resumed run
    left off instead of starting its patience and best weights afresh. A partial epoch (the
    relay was told to stop mid-epoch) does not count."""

    def __init__(self, settings: dict, relay: ReporterRelay) -> None:
        monitor = settings.get("monitor", "val_accuracy")
        super().__init__(
            monitor=monitor,
            mode="max" if "acc" in monitor else "min",  # known now, so a resume can replay before metrics exist
            patience=int(settings.get("patience", 5)),
            min_delta=float(settings.get("min_delta", 0.0)),
            restore_best_weights=True,
        )
        self.relay = relay
        self._resumed = False

    def resume(self, model, history: list[dict], best_weights: Path) -> None:
        """Before fit: replay the checkpointed epochs' `history` and take the checkpointed best
        weights. Then `stopped_epoch > 0` says it had already stopped the run."""
        self.set_model(model)
        super().on_train_begin()
        for record in history:
            super().on_epoch_end(record["epoch"] - 1, {self.monitor: record[self.monitor]})
        with np.load(best_weights) as arrays:
            self.best_weights = [arrays[f"arr_{i}"] for i in range(len(arrays.files))]
        model.stop_training = False
        self._resumed = True

    def on_train_begin(self, logs=None):
        if not self._resumed:  # a resumed one keeps its replayed state
            super().on_train_begin(logs)

    def on_epoch_end(self, epoch, logs=None):
        if not self.relay.stopped:
            super().on_epoch_end(epoch, logs)


class Checkpoint(keras.callbacks.Callback):
    """Writes the checkpoint after every finished epoch (see the module docstring). Comes after
    the relay and early stopping in fit's callbacks."""

    def __init__(self, workdir: Path, spec: dict, relay: ReporterRelay, early: ResumableEarlyStopping | None) -> None:
        super().__init__()
        self.folder = Path(workdir) / FOLDER
        self.spec = spec  # the run's spec as a dict (ExperimentSpec.to_dict())
        self.relay = relay
        self.early = early

    def on_epoch_end(self, epoch, logs=None):
        if self.relay.stopped:  # never checkpoint a half-trained epoch as done
            return
        if not (self.folder / SPEC).exists():
            self.folder.mkdir(parents=True, exist_ok=True)
            write_json(self.folder / SPEC, self.spec)
        name = f"epoch-{epoch + 1:04d}.weights.h5"
        self.model.save_weights(self.folder / name)
        state = {"epoch": epoch + 1, "weights": name}
        early = self.early
        if early is not None and early.best_weights is not None:  # None until the monitor has a value
            state["best"] = f"best-{early.best_epoch + 1:04d}.npz"
            if early.best_epoch == epoch:
                path = self.folder / state["best"]
                with open(path.with_suffix(".tmp"), "wb") as f:
                    np.savez(f, *early.best_weights)
                path.with_suffix(".tmp").replace(path)
        write_json(self.folder / POINTER, state)
        for old in [*self.folder.glob("epoch-*.weights.h5"), *self.folder.glob("best-*.npz")]:
            if old.name not in state.values():
                old.unlink()
        saved = getattr(self.relay.reporter, "checkpoint_saved", None)  # optional: a cluster task ships it home
        if saved is not None:
            saved(epoch + 1)
