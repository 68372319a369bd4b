"""Read side of the store: runs, their per-epoch histories and the leaderboard, as plain data."""

from __future__ import annotations

import functools
import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from cifar_core.errors import NotFound
from cifar_core.jobs import store
from cifar_core.jobs.queue import METRICS, RUNNING, SYSTEM_METRICS, Job, get_job
from cifar_core.spec import identity

LEADERBOARD_COLUMNS = [
    "run", "name", "status", "group", "seed", "params", "epochs", "epochs_planned", "best_val_accuracy",
    "best_epoch", "final_val_accuracy", "final_accuracy", "test_accuracy", "gap", "seconds_per_epoch",
    "validation", "optimizer", "learning_rate", "batch_size", "data_source", "config", "created",
    "node", "worker_pid",  # where its last epoch trained: host (or Ray node), and process
    "refit_of",  # a refit on train + holdout: the run it refits (analysis/refit.py); <NA> otherwise
    "tags", "notes", "archived",  # the run's tags with its seed group's, its Markdown note, archived or not
    "phase",  # what a running job does now (train.phases: "waiting for a node", "training", ...); None otherwise
    "status_note",  # what the job says: its consumer's note now (a pause for disk space), else why its last attempt ended
]
SYSTEM_COLUMNS = ["cpu_pct", "machine_cpu_pct", "peak_rss_mb", "cpu_model", "cores"]  # what its training process used
LEADERBOARD_COLUMNS += SYSTEM_COLUMNS
SYSTEM_EPOCH_COLUMNS = ["epoch", "cpu_pct", "machine_cpu_pct", "peak_rss_mb", "cpu_seconds", "seconds", "node",
                        "cpu_model", "cores"]
NOT_RECORDED = "not recorded"
MB = 1e6
GROUP_COLUMNS = [
    "config", "label", "name", "data_source", "runs", "run_ids", "best_val_accuracy_mean", "best_val_accuracy_std",
    "best_val_accuracy_min", "best_val_accuracy_max", "test_accuracy_mean", "test_accuracy_std", "test_accuracy_min",
    "test_accuracy_max", "params", "seconds_per_epoch",
    "tags", "notes",  # the seed group's own (Lab.group_seeds fills them from the store)
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
    system: pd.DataFrame | None = None  # per finished epoch, what the training process used (SYSTEM_EPOCH_COLUMNS)
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
    def system_summary(self) -> dict:
        """What its training process used over the epochs that recorded it (`system_usage`)."""
        return system_usage(self.system if self.system is not None else pd.DataFrame(columns=SYSTEM_EPOCH_COLUMNS))

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
            "node": self.job.node, "worker_pid": self.job.worker_pid, "refit_of": self.job.spec.get("refit_of") or None,
            "best_epoch": self.best_epoch, "best_val_accuracy": self.best_val_accuracy,
            "diagnosis": None if self.diagnosis is None else self.diagnosis.to_dict(),
            "spec": self.job.spec, "history": self.history.to_dict(orient="records"),
            "system": {**self.system_summary, "epochs": _records(self.system)},
        }


def _records(frame: pd.DataFrame | None) -> list[dict]:
    """Rows as dicts, a missing value as None (JSON null), never NaN."""
    if frame is None:
        return []
    return frame.astype(object).where(frame.notna(), None).to_dict(orient="records")


def run_history(conn: sqlite3.Connection, run_id: int) -> pd.DataFrame:
    """Per-epoch metrics of one run, epoch ascending (empty frame with the columns if none yet)."""
    rows = store.metric_rows(conn, [run_id], METRICS)
    return pd.DataFrame([dict(r) for r in rows], columns=["run", "epoch", *METRICS]).drop(columns="run")


def system_history(conn: sqlite3.Connection, run_id: int) -> pd.DataFrame:
    """Per finished epoch of one run, what its training process used (SYSTEM_EPOCH_COLUMNS): CPU
    use in % of one core and of the machine's cores, peak RSS in MB; NaN/None where not recorded."""
    rows = store.metric_rows(conn, [run_id], ("seconds", *SYSTEM_METRICS))
    frame = pd.DataFrame([dict(r) for r in rows], columns=["run", "epoch", "seconds", *SYSTEM_METRICS])
    return _with_use(frame)[SYSTEM_EPOCH_COLUMNS]


def _with_use(metrics: pd.DataFrame) -> pd.DataFrame:
    """Epoch rows (seconds, SYSTEM_METRICS) with their CPU use and peak RSS in readable units."""
    cpu, seconds = metrics["cpu_seconds"].astype(float), metrics["seconds"].astype(float)
    return metrics.assign(cpu_pct=100 * cpu / seconds, machine_cpu_pct=100 * cpu / (seconds * metrics["cores"].astype(float)),
                          peak_rss_mb=metrics["peak_rss_bytes"].astype(float) / MB)


def _use_by_run(metrics: pd.DataFrame) -> pd.DataFrame:
    """Per run (its index), from its epoch rows with their use (`_with_use`), over the epochs that
    recorded them: CPU seconds / wall seconds as % of one core and of its machine's cores, peak RSS
    (MB), the nodes and CPU models (in the order they trained), the cores of the last, and how many
    epochs recorded them."""
    kept = metrics[metrics["cpu_seconds"].notna()]
    if kept.empty:
        return pd.DataFrame(columns=["recorded_epochs", *SYSTEM_COLUMNS, "nodes"], index=pd.Index([], name="run"))
    grouped = kept.groupby("run")
    cpu, seconds = grouped["cpu_seconds"].sum(), grouped["seconds"].sum()
    core_seconds = (kept["seconds"] * kept["cores"]).groupby(kept["run"]).sum(min_count=1)
    return pd.DataFrame({
        "recorded_epochs": grouped["epoch"].count(),
        "cpu_pct": 100 * cpu / seconds, "machine_cpu_pct": 100 * cpu / core_seconds,
        "peak_rss_mb": grouped["peak_rss_mb"].max(),
        "cpu_model": _distinct(kept, "cpu_model"), "cores": grouped["cores"].last(),
        "nodes": _distinct(kept, "node"),
    }).rename_axis("run")


def _distinct(rows: pd.DataFrame, column: str) -> pd.Series:
    """Per run, the distinct values of `column` in the order they came, joined ("a, b"); runs
    without any are left out. A loop over the distinct pairs: a pandas agg per group took seconds
    over a thousand runs."""
    pairs = rows[["run", column]].dropna().drop_duplicates()
    joined: dict = {}
    for run, value in zip(pairs["run"], pairs[column]):
        joined[run] = f"{joined[run]}, {value}" if run in joined else value
    return pd.Series(joined, dtype=object)


def system_usage(epochs: pd.DataFrame) -> dict:
    """The summary of one run's SYSTEM_EPOCH_COLUMNS frame: recorded_epochs (0: not recorded),
    cpu_pct, machine_cpu_pct, peak_rss_mb, cpu_model, cores, nodes; None where not recorded."""
    by_run = _use_by_run(epochs.assign(run=0))
    if by_run.empty:
        return {"recorded_epochs": 0, **dict.fromkeys([*SYSTEM_COLUMNS, "nodes"])}
    row = by_run.iloc[0]
    return {k: (None if pd.isna(v) else v.item() if hasattr(v, "item") else v) for k, v in row.items()}


def system_line(usage: dict, epochs: int) -> str:
    """One line for a person: "CPU 183% of one core (92% of 2 cores), peak RSS 612 MB, on host
    (Intel Xeon), 3 epochs", or "not recorded"."""
    if not usage["recorded_epochs"]:
        return f"System metrics: {NOT_RECORDED} (this run trained before the lab recorded them)"
    over = f"{usage['recorded_epochs']} of {epochs} epochs" if usage["recorded_epochs"] < epochs else f"{epochs} epochs"
    machine = "" if usage["machine_cpu_pct"] is None else f" ({usage['machine_cpu_pct']:.0f}% of {usage['cores']} cores)"
    rss = NOT_RECORDED if usage["peak_rss_mb"] is None else f"{usage['peak_rss_mb']:,.0f} MB"
    return (f"CPU {usage['cpu_pct']:.0f}% of one core{machine}, peak RSS {rss}, on {usage['nodes'] or NOT_RECORDED}"
            f" ({usage['cpu_model'] or 'CPU model ' + NOT_RECORDED}), over {over}")


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
        system=system_history(conn, run_id),
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
                 "epochs_planned", "test_accuracy", "node", "worker_pid", "notes_md", "archived", "phase", "error",
                 "note"],
    )
    if runs.empty:
        return pd.DataFrame(columns=LEADERBOARD_COLUMNS)
    fields = ("accuracy", "val_accuracy", "seconds", *SYSTEM_METRICS)
    rows = store.metric_rows(conn, run_ids, fields)  # as tuples: half the time of dicts over 20,000 epochs
    metrics = pd.DataFrame([tuple(r) for r in rows], columns=["run", "epoch", *fields])
    use = _use_by_run(_with_use(metrics))[SYSTEM_COLUMNS].reset_index()
    board = runs.merge(_epoch_summary(metrics), on="run", how="left").merge(use, on="run", how="left")
    texts = board.pop("spec_json")
    specs = texts.map(json.loads)
    board["config"] = [_config_key(text, src) for text, src in zip(texts, board["data_source"])]
    board["data_source"] = board["data_source"].map(identity.source_name)
    board["validation"] = specs.map(lambda s: s.get("validation", "holdout"))
    board["optimizer"] = specs.map(lambda s: s.get("optimizer", "adam"))
    board["learning_rate"] = specs.map(lambda s: s.get("learning_rate"))
    board["batch_size"] = specs.map(lambda s: s.get("batch_size"))
    board["refit_of"] = specs.map(lambda s: s.get("refit_of") or None).astype("Int64")
    board["created"] = pd.to_datetime(board.pop("created_at"), unit="s").dt.floor("s")
    board["group"] = board.pop("grp").astype("Int64")
    board["epochs"] = board["epochs"].fillna(0).astype(int)
    board["worker_pid"] = board["worker_pid"].astype("Int64")
    board["cores"] = board["cores"].astype("Int64")
    board[["cpu_pct", "machine_cpu_pct", "peak_rss_mb"]] = board[["cpu_pct", "machine_cpu_pct", "peak_rss_mb"]].astype(float)
    board["tags"] = _tags(conn, board, run_ids)
    board["notes"] = board.pop("notes_md").fillna("")
    board["archived"] = board["archived"].astype(bool)
    board["phase"] = board["phase"].where(board["status"] == RUNNING, None)
    note = board.pop("note")
    board["status_note"] = note.where(note.notna(), board.pop("error"))
    return board[LEADERBOARD_COLUMNS]


def _tags(conn: sqlite3.Connection, board: pd.DataFrame, run_ids: list[int] | None) -> list[list[str]]:
    """Each row's tags: its own and its seed group's (configuration's), sorted."""
    own: dict[int, set[str]] = {}
    for r in store.run_tag_rows(conn, run_ids):
        own.setdefault(r["run"], set()).add(r["tag"])
    by_config: dict[str, set[str]] = {}
    for r in store.config_label_rows(conn)[0]:
        by_config.setdefault(r["config"], set()).add(r["tag"])
    return [sorted(own.get(run, set()) | by_config.get(key, set())) for run, key in zip(board["run"], board["config"])]


def config_notes(conn: sqlite3.Connection) -> dict[str, str]:
    """Each seed group's (configuration's) Markdown note, by config key."""
    return {r["config"]: r["notes_md"] for r in store.config_label_rows(conn)[1]}


@functools.lru_cache(maxsize=20_000)
def _config_key(spec_json: str, source: str) -> str:
    """identity.config_key of a stored spec: a job's spec never changes, so it is worked out once
    per process (a page redraws the leaderboard on every click)."""
    return identity.config_key(json.loads(spec_json), source)


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
            "tags": [], "notes": "", "_first": first,
        })
    out = pd.DataFrame(rows)
    clash = out["label"].duplicated(keep=False)  # same names and main settings, other layers or options
    out["label"] = [f"{lab} [#{first}]" if dup else lab for lab, first, dup in zip(out["label"], out["_first"], clash)]
    return out.drop(columns="_first").sort_values("best_val_accuracy_mean", ascending=False)[GROUP_COLUMNS]


def _spread(values: pd.Series, name: str) -> dict:
    v = values.astype(float)
    return {f"{name}_mean": v.mean(), f"{name}_std": v.std() if v.count() > 1 else float("nan"),
            f"{name}_min": v.min(), f"{name}_max": v.max()}
