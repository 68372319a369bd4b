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

This module only reads and writes the files (no Keras: the Ray dispatcher moves checkpoints
without loading TensorFlow); the Keras callbacks that write them and the restore are in
`train/resume.py`.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from cifar_core.errors import LabError
from cifar_core.train.atomic import write_bytes

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
