"""Experiments as the analyst handles them: validate, save by name, submit to the queue."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from cifar_core import config
from cifar_core.jobs import queue
from cifar_core.data.sources import load_dataset
from cifar_core.spec.schema import ExperimentSpec, parse_spec, summarize
from cifar_core.jobs.store import now, transaction
from cifar_core.errors import NotFound


def resolve_source(source: str | None) -> str:
    """The source a worker should read: paths made absolute, so any working directory finds them."""
    source = source or config.default_source()
    return source if source == config.DEFAULT_SOURCE else str(Path(source).expanduser().resolve())


def submit_experiment(
    conn: sqlite3.Connection,
    doc: dict,
    source: str | None = None,
    repeats: int = 1,
    **overrides,
) -> list[int]:
    """Validate `doc` (with overrides such as epochs=, batch_size=, seed= applied) and enqueue it
    `repeats` times with consecutive seeds. Returns the job ids."""
    doc = {**doc, **{k: v for k, v in overrides.items() if v is not None}}
    source = resolve_source(source)
    ds = load_dataset(source)
    spec = parse_spec(doc, ds.input_shape, ds.num_classes)
    params = summarize(spec, ds.input_shape, ds.num_classes).total_params
    return queue.submit(conn, spec.to_dict(), source, repeats=repeats, params=params)


def save_experiment(conn: sqlite3.Connection, doc: dict) -> ExperimentSpec:
    """Save (or replace) an experiment under its name, after validating it."""
    spec = parse_spec(doc)
    t = now()
    with transaction(conn):
        conn.execute(
            "INSERT INTO experiments (name, spec_json, created_at, updated_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT(name) DO UPDATE SET spec_json = excluded.spec_json, updated_at = excluded.updated_at",
            (spec.name, json.dumps(spec.to_dict()), t, t),
        )
    return spec


def list_experiments(conn: sqlite3.Connection) -> list[str]:
    return [r[0] for r in conn.execute("SELECT name FROM experiments ORDER BY name").fetchall()]


def get_experiment(conn: sqlite3.Connection, name: str) -> dict:
    row = conn.execute("SELECT spec_json FROM experiments WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise NotFound(f"no saved experiment {name!r}; saved ones: {', '.join(list_experiments(conn)) or 'none'}")
    return json.loads(row[0])
