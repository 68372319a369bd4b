"""Keeping runs in order: tags and notes, archive, and the trash (a deleted run's folder moved to
<lab home>/trash/<run>, restorable until the trash is emptied). Store writes go through
`jobs/store.py`; this module checks what it is given and moves the files."""

from __future__ import annotations

import re
import shutil
import sqlite3
from dataclasses import dataclass, replace
from pathlib import Path

from cifar_core import config
from cifar_core.errors import LabError, NotFound
from cifar_core.jobs import store
from cifar_core.jobs.queue import QUEUED, RUNNING, PAUSED

TAG_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,39}$")
TAG_RULE = "1-40 characters: letters, digits, '.', '_' or '-', starting with a letter or digit (case does not matter)"
NOTE_MAX = 20_000  # characters of a Markdown note
ACTIVE = (QUEUED, RUNNING, PAUSED)  # states a run cannot be deleted in


@dataclass(frozen=True)
class Hidden:
    """The one rule of what a list of runs leaves out, which every page and command applies: runs in
    the trash always, archived ones unless the user asked to see them (`show_archived`). A searching
    sweep's own decisions never apply it: the store holds every trial it ran."""

    trashed: frozenset[int]
    archived: frozenset[int]  # every archived run not in the trash, shown or not
    show_archived: bool = False

    @property
    def runs(self) -> frozenset[int]:
        return self.trashed | (frozenset() if self.show_archived else self.archived)

    def sparing(self, run_ids) -> Hidden:
        """The same rule showing these archived runs too: a link that names one opens it."""
        return replace(self, archived=self.archived - {int(r) for r in run_ids})

    def keep(self, run_ids) -> list[int]:
        """The ids a list shows, in their order."""
        return [int(r) for r in run_ids if int(r) not in self.runs]

    def rows(self, frame, column: str = "run"):
        """The rows of a frame (one run per row, its id in `column`) that a list shows."""
        return frame.loc[~frame[column].astype(int).isin(self.runs)] if len(frame) else frame


def hidden(conn: sqlite3.Connection, show_archived: bool = False) -> Hidden:
    trashed = store.hidden_run_ids(conn, archived=False)
    return Hidden(frozenset(trashed), frozenset(store.hidden_run_ids(conn, archived=True) - trashed), show_archived)


@dataclass(frozen=True)
class TrashedRun:
    run: int
    name: str
    trashed_at: float
    folder: str  # where its files wait in the trash


def clean_tags(tags) -> list[str]:
    """Tags as stored: lower case, each checked against TAG_RULE; LabError naming a bad one."""
    out = []
    for tag in tags:
        norm = str(tag).strip().lower()
        if not TAG_RE.match(norm):
            raise LabError(f"tag {str(tag)[:60]!r} is not allowed; a tag is {TAG_RULE} (e.g. muon, lr-sweep, v2.1)")
        if norm not in out:
            out.append(norm)
    if not out:
        raise LabError(f"no tag given; a tag is {TAG_RULE}")
    return out


def tag_runs(conn: sqlite3.Connection, run_ids, tags, remove: bool = False) -> list[str]:
    """Add (or remove) checked tags on runs that exist; the tags as stored."""
    tags = clean_tags(tags)
    ids = known_runs(conn, run_ids)
    with store.transaction(conn):
        (store.remove_run_tags if remove else store.add_run_tags)(conn, ids, tags)
    return tags


def clean_note(text: str | None) -> str | None:
    text = (text or "").strip()
    if len(text) > NOTE_MAX:
        raise LabError(f"the note has {len(text):,} characters; keep it under {NOTE_MAX:,} (link to a document for more)")
    return text or None


def known_runs(conn: sqlite3.Connection, run_ids) -> list[int]:
    """The ids, each checked to name a run; NotFound naming the first that does not."""
    ids = [int(r) for r in run_ids]
    present = set(store.run_ids_present(conn, ids))
    for run in ids:
        if run not in present:
            raise NotFound(f"no run {run}; `python -m cifar_core runs` lists the runs")
    return ids


def trash_dir() -> Path:
    return config.lab_home() / "trash"


def refuse_active(conn: sqlite3.Connection, run_ids: list[int]) -> None:
    for row in store.run_keeping_rows(conn, run_ids):
        if row["state"] in ACTIVE:
            raise LabError(f"run {row['run']} is {row['state']}; cancel it first (`python -m cifar_core cancel "
                           f"{row['run']}`), then delete it")


def move_to_trash(conn: sqlite3.Connection, run_id: int) -> None:
    """Move one finished run's folder into the trash and mark it trashed (the folder first: a crash
    between leaves the run shown, with its files in the trash, never a row pointing at nothing)."""
    [row] = store.run_keeping_rows(conn, [run_id])
    if row["trashed_at"] is not None:
        return
    source, target = Path(row["artifacts_dir"]), trash_dir() / str(run_id)
    if target.exists():
        raise LabError(f"{target} is in the way of run {run_id}'s files; move it elsewhere, then delete again")
    if source.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(source), str(target))
    with store.transaction(conn):
        store.set_trashed(conn, run_id, store.now(), str(target))


def restore_from_trash(conn: sqlite3.Connection, run_id: int) -> None:
    [row] = store.run_keeping_rows(conn, [run_id])
    if row["trashed_at"] is None:
        raise LabError(f"run {run_id} is not in the trash; `python -m cifar_core trash` lists what is")
    source, target = Path(row["trash_dir"]), Path(row["artifacts_dir"])
    if source.exists():
        if target.exists():
            raise LabError(f"{target} exists; move it away, then restore run {run_id} again")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(source), str(target))
    with store.transaction(conn):
        store.set_trashed(conn, run_id, None, None)


def trashed(conn: sqlite3.Connection) -> list[TrashedRun]:
    rows = [r for r in store.run_keeping_rows(conn) if r["trashed_at"] is not None]
    names = {r: d.get("name", "") for r, d in store.spec_docs(conn, [r["run"] for r in rows]).items()}
    return [TrashedRun(r["run"], names.get(r["run"], ""), r["trashed_at"], r["trash_dir"]) for r in rows]


def empty_trash(conn: sqlite3.Connection) -> list[int]:
    """Remove every trashed run's files and rows for good; the ids removed."""
    gone = trashed(conn)
    for run in gone:
        shutil.rmtree(run.folder, ignore_errors=True)
    with store.transaction(conn):
        store.forget_runs(conn, [r.run for r in gone])
        if store.baseline_run(conn) in {r.run for r in gone}:
            store.put_baseline(conn, None)
    return [r.run for r in gone]
