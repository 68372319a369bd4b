"""Read side of the store: runs, their per-epoch histories and the leaderboard, as plain data."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from cifar_core.errors import NotFound
from cifar_core.jobs import store
from cifar_core.jobs.queue import METRICS, RUNNING, Job, get_job
from cifar_core.spec import identity

LEADERBOARD_COLUMNS = [
    "run", "name", "status", "group", "seed", "params", "epochs", "epochs_planned", "best_val_accuracy",
    "best_epoch", "final_val_accuracy", "final_accuracy", "test_accuracy", "gap", "seconds_per_epoch",
    "validation", "optimizer", "learning_rate", "batch_size", "data_source", "config", "created",
    "node", "worker_pid",  # where its last epoch trained: host (or Ray node), and process
    "phase",  # what a running job does now (train.phases: "waiting for a node", "training", ...); None otherwise
    "note",  # what the job says: its consumer's note now (a pause for disk space), else why its last attempt ended
]
GROUP_COLUMNS = [
    "config", "label", "name", "data_source", "runs", "run_ids", "best_val_accuracy_mean", "best_val_accuracy_std",
    "best_val_accuracy_min", "best_val_accuracy_max", "test_accuracy_mean", "test_accuracy_std", "test_accuracy_min",
    "test_accuracy_max", "params", "seconds_per_epoch",
]


@dataclass(frozen=True)
class RunDetail:
    job: Job
    params: int
    seed: int
    artifacts_dir: Path
    test_loss: float | None
    test_accuracy: float | None
    stopped_epoch: int | None
    stop_reason: str | None
    train_seconds: float | None
    history: pd.DataFrame  # one row per finished epoch
    diagnosis: object | None = None  # analysis.diagnosis.Diagnosis, filled in by the Lab

    @property
    def best_epoch(self) -> int | None:
        """The epoch with the highest validation accuracy (the earliest of ties)."""
        val = self.history["val_accuracy"] if "val_accuracy" in self.history else pd.Series(dtype=float)
        return None if val.dropna().empty else int(self.history.loc[val.astype(float).idxmax(), "epoch"])

    @property
    def best_val_accuracy(self) -> float | None:
        best = self.best_epoch
        return None if best is None else float(self.history.loc[self.history["epoch"] == best, "val_accuracy"].iloc[0])

    @property
    def files(self) -> list[Path]:
        return sorted(p for p in self.artifacts_dir.glob("*") if p.is_file()) if self.artifacts_dir.exists() else []

    def to_dict(self) -> dict:
        return {
            "run": self.job.id, "name": self.job.name, "status": self.job.state, "error": self.job.error,
            "attempts": self.job.attempts, "params": self.params, "seed": self.seed,
            "test_loss": self.test_loss, "test_accuracy": self.test_accuracy,
            "stopped_epoch": self.stopped_epoch, "stop_reason": self.stop_reason,
            "train_seconds": self.train_seconds, "artifacts_dir": str(self.artifacts_dir),
            "node": self.job.node, "worker_pid": self.job.worker_pid,
            "best_epoch": self.best_epoch, "best_val_accuracy": self.best_val_accuracy,
            "diagnosis": None if self.diagnosis is None else self.diagnosis.to_dict(),
            "spec": self.job.spec, "history": self.history.to_dict(orient="records"),
        }


def run_history(conn: sqlite3.Connection, run_id: int) -> pd.DataFrame:
    """Per-epoch metrics of one run, epoch ascending (empty frame with the columns if none yet)."""
    rows = store.metric_rows(conn, [run_id], METRICS)
    return pd.DataFrame([dict(r) for r in rows], columns=["run", "epoch", *METRICS]).drop(columns="run")


def histories(conn: sqlite3.Connection, run_ids: list[int]) -> pd.DataFrame:
    """Per-epoch metrics of several runs in one long frame with a `run` column."""
    rows = store.metric_rows(conn, [int(i) for i in run_ids], METRICS)
    return pd.DataFrame([dict(r) for r in rows], columns=["run", "epoch", *METRICS])


RUNNING_COLUMNS = ["run", "epoch", "loss", "accuracy"]


def running_points(conn: sqlite3.Connection, run_ids: list[int]) -> pd.DataFrame:
    """The running training loss and accuracy stored inside the runs' epochs, every few seconds,
    as one long frame (run, epoch, loss, accuracy) whose `epoch` is fractional: epoch - 1 +
    batch / batches, so a point halfway through epoch 3 sits at 2.5."""
    rows = store.batch_point_rows(conn, [int(i) for i in run_ids])
    frame = pd.DataFrame([dict(r) for r in rows], columns=["run", "epoch_float", "loss", "accuracy"])
    return frame.rename(columns={"epoch_float": "epoch"})[RUNNING_COLUMNS]


def run_detail(conn: sqlite3.Connection, run_id: int) -> RunDetail:
    job = get_job(conn, run_id)
    row = store.run_row(conn, run_id)
    if row is None:
        raise NotFound(f"no run {run_id}; `python -m cifar_core runs` lists the runs")
    return RunDetail(
        job=job, params=row["params"], seed=row["seed"], artifacts_dir=Path(row["artifacts_dir"]),
        test_loss=row["test_loss"], test_accuracy=row["test_accuracy"], stopped_epoch=row["stopped_epoch"],
        stop_reason=row["stop_reason"], train_seconds=row["train_seconds"], history=run_history(conn, run_id),
    )


def leaderboard(conn: sqlite3.Connection) -> pd.DataFrame:
    """Every run with its summary figures (one row per run, newest first)."""
    return _board(conn, None)


def leaderboard_rows(conn: sqlite3.Connection, run_ids: list[int]) -> pd.DataFrame:
    """The leaderboard rows of some runs only (newest first); unknown ids are left out."""
    return _board(conn, [int(i) for i in run_ids])


def run_specs(conn: sqlite3.Connection, run_ids: list[int]) -> dict[int, dict]:
    """The spec document of each run, by run id, in the order asked; unknown ids are left out."""
    ids = [int(i) for i in run_ids]
    found = store.spec_docs(conn, ids)
    return {i: found[i] for i in ids if i in found}


def _board(conn: sqlite3.Connection, run_ids: list[int] | None) -> pd.DataFrame:
    """Leaderboard rows of `run_ids` (all runs when None)."""
    runs = pd.DataFrame(
        [dict(r) for r in store.board_rows(conn, run_ids)],
        columns=["run", "name", "status", "grp", "spec_json", "data_source", "created_at", "seed", "params",
                 "epochs_planned", "test_accuracy", "node", "worker_pid", "phase", "error", "note"],
    )
    if runs.empty:
        return pd.DataFrame(columns=LEADERBOARD_COLUMNS)
    metrics = pd.DataFrame(
        [dict(r) for r in store.metric_rows(conn, run_ids, ("accuracy", "val_accuracy", "seconds"))],
        columns=["run", "epoch", "accuracy", "val_accuracy", "seconds"],
    )
    board = runs.merge(_epoch_summary(metrics), on="run", how="left")
    specs = board.pop("spec_json").map(json.loads)
    board["config"] = [identity.config_key(s, src) for s, src in zip(specs, board["data_source"])]
    board["data_source"] = board["data_source"].map(identity.source_name)
    board["validation"] = specs.map(lambda s: s.get("validation", "holdout"))
    board["optimizer"] = specs.map(lambda s: s.get("optimizer", "adam"))
    board["learning_rate"] = specs.map(lambda s: s.get("learning_rate"))
    board["batch_size"] = specs.map(lambda s: s.get("batch_size"))
    board["created"] = pd.to_datetime(board.pop("created_at"), unit="s").dt.floor("s")
    board["group"] = board.pop("grp").astype("Int64")
    board["epochs"] = board["epochs"].fillna(0).astype(int)
    board["worker_pid"] = board["worker_pid"].astype("Int64")
    board["phase"] = board["phase"].where(board["status"] == RUNNING, None)
    board["note"] = board["note"].where(board["note"].notna(), board.pop("error"))
    return board[LEADERBOARD_COLUMNS]


def _epoch_summary(metrics: pd.DataFrame) -> pd.DataFrame:
    """Per run: epochs done, best validation accuracy and its epoch, final figures, gap, s/epoch."""
    if metrics.empty:
        return pd.DataFrame(columns=["run", "epochs", "best_val_accuracy", "best_epoch", "final_val_accuracy",
                                     "final_accuracy", "gap", "seconds_per_epoch"])
    grouped = metrics.groupby("run")
    last = grouped.tail(1).set_index("run")
    best_idx = metrics["val_accuracy"].fillna(-1).groupby(metrics["run"]).idxmax()
    best = metrics.loc[best_idx].set_index("run")
    out = pd.DataFrame({
        "epochs": grouped["epoch"].max(),
        "best_val_accuracy": best["val_accuracy"],
        "best_epoch": best["epoch"],
        "final_val_accuracy": last["val_accuracy"],
        "final_accuracy": last["accuracy"],
        "gap": last["accuracy"] - last["val_accuracy"],
        "seconds_per_epoch": grouped["seconds"].mean(),
    })
    return out.reset_index()


def group_summary(board: pd.DataFrame, specs: dict[int, dict] | None = None) -> pd.DataFrame:
    """The succeeded runs of each configuration (`identity.config_key`: every setting but the seed
    and the name, on one data source) pooled over their seeds: n, mean, std and min–max of the
    best validation and the test accuracy, and a readable label (from `specs`, run id -> spec,
    when given). Never pools runs of different data sources or settings, whatever their names."""
    done = board[board["status"] == "succeeded"]
    if done.empty:
        return pd.DataFrame(columns=GROUP_COLUMNS)
    specs = specs or {}
    rows = []
    for key, part in done.groupby("config", sort=False):
        part = part.sort_values("run")
        names = part["name"].tolist()
        first = int(part["run"].iloc[0])
        rows.append({
            "config": key, "label": identity.label(names, specs[first]) if first in specs else ", ".join(dict.fromkeys(names)),
            "name": ", ".join(dict.fromkeys(names)), "data_source": part["data_source"].iloc[0], "runs": len(part),
            "run_ids": ", ".join(f"#{r}" for r in part["run"]),
            **_spread(part["best_val_accuracy"], "best_val_accuracy"), **_spread(part["test_accuracy"], "test_accuracy"),
            "params": part["params"].iloc[0], "seconds_per_epoch": part["seconds_per_epoch"].mean(),
            "_first": first,
        })
    out = pd.DataFrame(rows)
    clash = out["label"].duplicated(keep=False)  # same names and main settings, other layers or options
    out["label"] = [f"{lab} [#{first}]" if dup else lab for lab, first, dup in zip(out["label"], out["_first"], clash)]
    return out.drop(columns="_first").sort_values("best_val_accuracy_mean", ascending=False)[GROUP_COLUMNS]


def _spread(values: pd.Series, name: str) -> dict:
    v = values.astype(float)
    return {f"{name}_mean": v.mean(), f"{name}_std": v.std() if v.count() > 1 else float("nan"),
            f"{name}_min": v.min(), f"{name}_max": v.max()}
