"""A training run's checkpoint, `workdir/backup/`: what it takes to resume the run after a kill
at any moment, on this machine or another.

The folder holds
- `spec.json`: the spec the run was started with, written when the folder is first created, so
  the weights always come with the net they belong to;
- `epoch-NNNN.weights.h5`: the weights and optimizer state after the last finished epoch;
- `best-NNNN.npz`: with early stopping, the weights of its best epoch so far;
- `checkpoint.json`: the pointer, `{"epoch", "weights"}` plus `"best"` once early stopping has
  best weights.

A kill at any moment leaves it usable: each epoch's weights go to a new file, then the pointer
is switched to it by an atomic rename, then older files are removed. (Keras's BackupAndRestore
overwrites one weights file in place, which a SIGKILL mid-write leaves corrupt.) Early stopping's
state is not stored beyond its best weights: it is replayed from the run's history.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import keras
import numpy as np

from cifar_core.errors import LabError
from cifar_core.train.atomic import write_bytes, write_json

if TYPE_CHECKING:
    from cifar_core.train.relay import ReporterRelay

FOLDER = "backup"
POINTER = "checkpoint.json"
SPEC = "spec.json"


@dataclass(frozen=True)
class CheckpointState:
    epoch: int  # the last finished epoch (1-based); a resumed run starts after it
    weights: Path  # model weights and optimizer state after that epoch
    best_weights: Path | None  # early stopping's best weights so far; None when off or not yet known
    spec: dict | None  # the spec the run was started with; None in checkpoints written before it was kept


def read_checkpoint(workdir: Path) -> CheckpointState | None:
    """The state of `workdir`'s checkpoint, or None when there is nothing to resume."""
    folder = Path(workdir) / FOLDER
    pointer = folder / POINTER
    if not pointer.exists():
        return None
    state = json.loads(pointer.read_text())
    spec_path = folder / SPEC
    return CheckpointState(
        epoch=state["epoch"],
        weights=folder / state["weights"],
        best_weights=folder / state["best"] if "best" in state else None,
        spec=json.loads(spec_path.read_text()) if spec_path.exists() else None,
    )


def check_same_spec(state: CheckpointState, spec: dict) -> None:
    """Refuse to resume a checkpoint with another spec: its weights belong to a different run."""
    from cifar_core.spec.diff import flatten_spec

    if state.spec is None:
        return  # written before checkpoints kept their spec: trusted, as it always was
    saved, given = flatten_spec(state.spec), flatten_spec(spec)
    differences = [
        f"{key}: {saved.get(key, 'absent')} in the checkpoint, {given.get(key, 'absent')} given"
        for key in dict.fromkeys([*saved, *given])
        if saved.get(key) != given.get(key)
    ]
    if differences:
        raise LabError(
            f"the checkpoint at epoch {state.epoch} belongs to another spec ({'; '.join(differences)}); "
            "resume it with its own spec, or discard the checkpoint to start afresh"
        )


def discard_checkpoint(workdir: Path) -> None:
    shutil.rmtree(Path(workdir) / FOLDER, ignore_errors=True)


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


def checkpoint_files(workdir: Path) -> dict[str, bytes]:
    """The files that resume `workdir`'s run elsewhere, by path relative to it: the checkpoint
    (pointer, spec, weights, best weights) and the history. Empty when there is no checkpoint."""
    workdir = Path(workdir)
    folder = workdir / FOLDER
    pointer = folder / POINTER
    if not pointer.exists():
        return {}
    state = json.loads(pointer.read_text())
    names = [POINTER, SPEC, state["weights"], *([state["best"]] if "best" in state else [])]
    files = {f"{FOLDER}/{n}": (folder / n).read_bytes() for n in names if (folder / n).exists()}
    if (workdir / "history.json").exists():
        files["history.json"] = (workdir / "history.json").read_bytes()
    return files


def write_checkpoint_files(workdir: Path, files: dict[str, bytes]) -> None:
    """Put `checkpoint_files` of another machine into `workdir` so that a kill at any moment
    leaves a usable checkpoint: every file by an atomic rename, the pointer last, then the files
    it no longer names are removed."""
    workdir = Path(workdir)
    (workdir / FOLDER).mkdir(parents=True, exist_ok=True)
    pointer = f"{FOLDER}/{POINTER}"
    for name in sorted(files, key=lambda n: n == pointer):  # the pointer last
        if "/" in name.replace(f"{FOLDER}/", "", 1) or name.startswith(("/", ".")):
            raise LabError(f"refusing checkpoint file {name!r}: not a plain name in the run folder")
        write_bytes(workdir / name, files[name])
    if pointer in files:
        keep = {n.split("/", 1)[1] for n in files if n.startswith(f"{FOLDER}/")}
        for old in [*(workdir / FOLDER).glob("epoch-*.weights.h5"), *(workdir / FOLDER).glob("best-*.npz")]:
            if old.name not in keep:
                old.unlink()
