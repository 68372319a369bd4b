"""The lab's use cases: what the pages and the command line call, and nothing else does.

`Lab()` is the lab at `$CIFAR_LAB_HOME`. Each call opens its own short store connection (SQLite
connections must stay in the thread that opened them, and Streamlit runs every session in its
own thread), so one `Lab` can serve a whole session. Every submit goes through one path: validate
each spec against the data source's image shape and class count, count its parameters, enqueue
them in one transaction, and return the group id with the job ids.

`Lab(actor)` acts for someone: in a lab with a login, the signed-in user (the pages) or `--as
EMAIL` (the command line), with their role (`team.py`). Every method that changes the lab is
marked `@acts(ACTION)`: the actor's role is checked before it runs (team.Forbidden names the role
and what it may not do) and what it did is recorded in the audit after. `Lab()` (no actor: a lab
without a login) checks and records nothing, as before logins.
"""

from __future__ import annotations

import functools
import inspect
import sqlite3
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from typing import TYPE_CHECKING

from cifar_core import config, team
from cifar_core.data.sources import load_dataset
from cifar_core.errors import LabError, NotFound, StoreError
from cifar_core.jobs import queue, store, worker
from cifar_core.jobs.queue import Submitted
from cifar_core.spec.schema import ExperimentSpec
from cifar_core.spec.summary import summarize
from cifar_core.spec.validate import parse_spec

if TYPE_CHECKING:
    import pandas as pd

    from cifar_core.analysis import choice, prediction, report
    from cifar_core.analysis.sweeps import SweepPlan, SweepResults
    from cifar_core.jobs import results
    from cifar_core.views import training as monitor

# The analysis, results and view modules (pandas, Plotly) are imported in the methods that use
# them, so the queue commands of the CLI (submit, cancel, retry) start in a fraction of a second.

POLL_SECONDS = 1.0
WORKER_RESTARTS = 3  # times a worker is started again when none is alive and jobs remain
PREDICT_TIMEOUT = 300.0  # seconds for the model helper's answer (a cold one imports TensorFlow first)
EXPORT_TIMEOUT = 900.0


def _ids(value) -> list[int]:
    """A run id argument, or a list of them, as a list of ints."""
    if value is None:
        return []
    return [int(v) for v in value] if isinstance(value, (list, tuple, set)) else [int(value)]


def acts(action: str, run: str | None = None, made: Callable | None = None, detail: Callable | None = None):
    """Mark a Lab method that changes the lab by doing `action` (a team.NEEDS key). With an actor,
    the role is checked first (an OWN action against whoever submitted the run or runs the method's
    parameter `run` names), and once the method has returned it is recorded in the audit: one row per
    run (`run`'s, or `made(result)` for runs it created), or one row with no run; `detail(result)`
    adds a line. Without an actor the method runs alone. New methods that change runs (tag,
    archive, delete...) take it too: `@acts("tag", run="run_id")`."""

    def wrap(method):
        signature = inspect.signature(method)

        @functools.wraps(method)
        def acting(self, *args, **kwargs):
            if self.actor is None:
                return method(self, *args, **kwargs)
            runs = _ids(signature.bind(self, *args, **kwargs).arguments.get(run)) if run else []
            self.check(action, runs)
            result = method(self, *args, **kwargs)
            self._record(action, _ids(made(result)) if made else runs, detail(result) if detail else "")
            return result

        return acting

    return wrap


class Lab:
    """The use cases over the lab's store, run folders and data sources, for one actor."""

    def __init__(self, actor: team.Actor | None = None):
        self.actor = actor  # who acts (team.Actor); None: a lab without a login, its one local user

    # ------------------------------------------------------------ who may do what

    def may(self, action: str, owners: tuple[str | None, ...] = ()) -> str | None:
        """Why the actor may not do `action` (to runs submitted by `owners`), None if they may: what
        a page shows beside a disabled button. Reads nothing."""
        return team.refusal(self.actor, action, tuple(owners))

    def refusal(self, action: str, run_ids: list[int] = ()) -> str | None:
        """Why the actor may not do `action` to these runs (their submitters read from the store),
        None if they may: what a page shows beside a disabled button acting on picked runs."""
        if self.actor is None:
            return None
        owners = ()
        if run_ids and team.NEEDS.get(action) == team.OWN and self.actor.role != team.ADMIN:
            with self._store() as conn:
                owners = tuple(store.submitters(conn, list(run_ids)).values())
        return team.refusal(self.actor, action, owners)

    def check(self, action: str, run_ids: list[int] = ()) -> None:
        """Raise team.Forbidden if the actor may not do `action` to these runs."""
        why = self.refusal(action, run_ids)
        if why:
            raise team.Forbidden(why)

    def _record(self, action: str, run_ids: list[int], detail: str) -> None:
        rows = [(self.actor.user, self.actor.role, action, r, detail) for r in run_ids or [None]]
        with self._store() as conn:
            store.insert_audit(conn, rows, store.now())

    def audit(self, user: str | None = None, limit: int = 100) -> pd.DataFrame:
        """Who did what, newest first (of `user` alone unless None): when, user, role, action, run,
        run name, detail. Empty in a lab without a login, which records nothing."""
        import pandas as pd

        if limit < 1:
            raise LabError(f"--limit {limit}: give a number of records of at least 1")
        with self._store() as conn:
            rows = [dict(r) for r in store.audit_rows(conn, user, limit)]
        columns = ["id", "at", "user", "role", "action", "run_id", "run_name", "detail"]
        frame = pd.DataFrame(rows, columns=columns)
        frame["at"] = pd.to_datetime(frame["at"], unit="s", utc=True)
        return frame

    def audit_users(self) -> list[str]:
        """Everyone the audit names, sorted."""
        with self._store() as conn:
            return store.audit_users(conn)

    @contextmanager
    def _store(self) -> Iterator[sqlite3.Connection]:
        conn = store.connect()
        try:
            yield conn
        finally:
            conn.close()

    # ------------------------------------------------------------ experiments and submitting

    @acts("save", detail=lambda spec: spec.name)
    def save_experiment(self, doc: dict) -> ExperimentSpec:
        """Save (or replace) an experiment under its name, after validating it."""
        spec = parse_spec(doc)
        with self._store() as conn:
            store.save_experiment(conn, spec.name, spec.to_dict())
        return spec

    def experiment_names(self) -> list[str]:
        with self._store() as conn:
            return store.experiment_names(conn)

    def experiment(self, name: str) -> dict:
        with self._store() as conn:
            doc = store.experiment_doc(conn, name)
            if doc is None:
                saved = ", ".join(store.experiment_names(conn)) or "none"
                raise NotFound(f"no saved experiment {name!r}; saved ones: {saved}")
        return doc

    def submit(self, doc: dict, source: str | None = None, repeats: int = 1, tags=(), **overrides) -> Submitted:
        """Validate `doc` (with overrides such as epochs=, batch_size=, seed= applied) and enqueue it
        `repeats` times with consecutive seeds, grouped when more than one, each run carrying `tags`."""
        doc = {**doc, **{k: v for k, v in overrides.items() if v is not None}}
        ds = load_dataset(config.resolve_source(source))
        spec = parse_spec(doc, ds.input_shape, ds.num_classes)  # names and seeds the copies
        return self.enqueue(*queue.repeated(spec.to_dict(), repeats), source=source, tags=tags)

    def plan_sweep(self, base_doc: dict, space_doc, input_shape=None, num_classes: int | None = None,
                   search=None) -> SweepPlan:
        """The runs a sweep would submit (validated against that shape and class count, CIFAR-10's by
        default), named as `submit_sweep` names them: numbered past the runs of earlier sweeps over
        the same base, so run names are unique across sweeps."""
        from cifar_core.analysis import sweeps

        with self._store() as conn:
            first = sweeps.next_run_number(conn, base_doc)
        dims = {k: v for k, v in (("input_shape", input_shape), ("num_classes", num_classes)) if v is not None}
        return sweeps.plan_sweep(base_doc, space_doc, first=first, search=search, **dims)

    def submit_sweep(self, base_doc: dict, space_doc, source: str | None = None, search=None, tags=()) -> Submitted:
        """Plan a sweep against the data source's shape and classes and enqueue its runs as one
        group; nothing is enqueued if any run is invalid. With a `search.config.SearchConfig`, its
        sampler draws the trials (a learning one, TPE, as earlier trials end) and its pruner stops
        the losing ones after each epoch (jobs/sweeping.py). Every trial carries `tags`, the ones a
        searching sweep adds later too."""
        from cifar_core.analysis import sweeps

        source = config.resolve_source(source)
        ds = load_dataset(source)
        plan = self.plan_sweep(base_doc, space_doc, ds.input_shape, ds.num_classes, search)
        return self.enqueue(list(plan.docs), sweeps.group_of(plan, base_doc), source, tags=tags)

    def submit_reproduction(self, source: str | None = None, epochs_scale: float = 1.0, epochs: int | None = None,
                            seeds: int = 1) -> Submitted:
        """The notebook's five experiments with seeds 0..seeds-1, as one group."""
        from cifar_core.analysis import report

        return self.enqueue(*report.reproduction(epochs_scale, epochs, seeds), source=source)

    def reproduce(self, source: str | None = None, out=None, epochs_scale: float = 1.0, epochs: int | None = None,
                  progress=print, timeout: float | None = None, seeds: int = 1) -> report.ReproduceResult:
        """Submit the notebook's five experiments (seeds 0..seeds-1), make sure a worker trains them,
        wait with progress lines, and write the report. Returns where it is and which jobs failed."""
        from cifar_core.analysis import report

        group, ids = self.submit_reproduction(source, epochs_scale, epochs, seeds)
        with self._store() as conn:
            job = queue.get_job(conn, ids[0])
            each = f" with seeds 0-{seeds - 1}" if seeds > 1 else ""
            progress(f"submitted {', '.join(report.NOTEBOOK_PRESETS)}{each} as jobs {ids[0]}-{ids[-1]} (group {group}) "
                     f"on {job.data_source}")
            pid = start_worker_if_none()
            progress(f"started a worker (pid {pid}); it exits when the queue is empty" if pid else
                     "a worker is already running; it will train them")
            jobs = wait_for_jobs(conn, ids, progress, timeout=timeout)
            progress("writing the report")
            md_path, html_path = report.write_report(report.build_report(conn, ids), out)
        failed = tuple(j.id for j in jobs if j.state != queue.SUCCEEDED)
        return report.ReproduceResult(group, tuple(ids), md_path, html_path, failed)

    def write_report(self, group_id: int, out=None, reference_epoch: float | None = None) -> tuple[Path, Path]:
        """The reproduce report of a group of runs, written again from the store."""
        from cifar_core.analysis import report

        with self._store() as conn:
            built = report.build_report(conn, report.group_runs(conn, group_id), reference_epoch=reference_epoch)
            return report.write_report(built, out)

    @acts("submit", made=lambda submitted: submitted.job_ids)
    def enqueue(self, docs: list[dict], group: tuple[str, str, dict] | None, source: str | None = None,
                tags=()) -> Submitted:
        """The one way jobs enter the queue: each doc validated against the data and counted, its
        tags checked (`keeping.TAG_RULE`) before anything is queued; the jobs belong to the actor."""
        from cifar_core.jobs import keeping

        tags = keeping.clean_tags(tags) if tags else []
        source = config.resolve_source(source)
        ds = load_dataset(source)
        checked = []
        for doc in docs:
            spec = parse_spec(doc, ds.input_shape, ds.num_classes)
            checked.append((spec.to_dict(), summarize(spec, ds.input_shape, ds.num_classes).total_params))
        with self._store() as conn:
            return queue.submit_many(conn, checked, source, group, tags, self.actor.user if self.actor else None)

    # ------------------------------------------------------------ the queue

    @acts("cancel", run="job_id")
    def cancel(self, job_id: int) -> str:
        with self._store() as conn:
            return queue.cancel(conn, int(job_id))

    @acts("retry", run="job_id")
    def retry(self, job_id: int) -> str:
        """Queue a failed or cancelled job again; it resumes from its last checkpoint."""
        with self._store() as conn:
            return queue.retry(conn, int(job_id))

    def queue_view(self, recent: int = 10, archived: bool = False) -> monitor.QueueView:
        """The Training page's view: every queued and running job (each holds a place in the queue,
        archived or not), and the recent finished ones but those keeping.Hidden leaves out."""
        from cifar_core.jobs import keeping
        from cifar_core.views import training as monitor

        with self._queue() as conn:
            return monitor.queue_view(conn, recent, hide=keeping.hidden(conn, archived).runs)

    def try_worker_again(self) -> int | None:
        """Forget why the wanted Ray dispatcher could not start and start it again; its pid, or
        None when a worker of the wanted kind already runs."""
        from cifar_core.jobs import launcher

        launcher.clear_start_problem()
        return launcher.ensure_worker()

    def queue_counts(self) -> dict[str, int]:
        with self._queue() as conn:
            return queue.counts(conn)

    def cluster(self) -> monitor.ClusterView | None:
        """The Ray cluster the dispatcher works on (nodes, CPUs and GPUs in use and free, jobs on
        each node), or None when the queue runs on local workers."""
        from cifar_core.views import training as monitor

        with self._store() as conn:
            return monitor.cluster_view(conn)

    def jobs(self, limit: int = 10_000, archived: bool = False, spare: Collection[int] = ()) -> list[queue.Job]:
        """Every job, newest first: archived ones only when `archived` (or named in `spare`, as a link
        names one), those in the trash never."""
        from cifar_core.jobs import keeping

        with self._queue() as conn:
            hidden = keeping.hidden(conn, archived).sparing(spare).runs
            return [j for j in queue.list_jobs(conn, limit=limit + len(hidden)) if j.id not in hidden][:limit]

    def hidden(self, archived: bool = False):
        """What every list of runs leaves out (jobs.keeping.Hidden): the trash, and archived runs
        unless `archived`; its `archived` set counts them for a page's "show archived" toggle."""
        from cifar_core.jobs import keeping

        with self._store() as conn:
            return keeping.hidden(conn, archived)

    @contextmanager
    def _queue(self) -> Iterator[sqlite3.Connection]:
        """The store, after returning expired leases to the queue: a job whose worker died shows
        as queued (or ended) at once, not only when some worker next claims."""
        with self._store() as conn:
            queue.reap_expired(conn)
            yield conn

    # ------------------------------------------------------------ the store itself

    def backup(self) -> Path:
        """An online copy of the store in <home>/backups (the newest few are kept)."""
        with self._store() as conn:
            return store.backup(conn)

    @acts("restore", detail=lambda restored: f"from {restored[0]}")
    def restore(self, backup: Path | None = None) -> tuple[Path, Path | None]:
        """Put a backup (default: the newest) in place of the store; refused while a worker runs,
        since it would go on writing to the store being replaced."""
        try:
            with self._store() as conn:
                alive = [w for w in worker.list_workers(conn) if w.alive]
        except StoreError:
            alive = []  # the store is what is broken: nothing can be read from it
        if alive:
            pids = ", ".join(str(w.pid) for w in alive)
            raise LabError(f"workers are running (pid {pids}); stop them (and the app) before restoring the store")
        return store.restore(backup)

    # ------------------------------------------------------------ results

    def leaderboard(self, run_ids: list[int] | None = None, where: str = "", archived: bool = False) -> pd.DataFrame:
        """One row per run (newest first) with its summary figures, its diagnosis's title, tags, note
        and, with a baseline pinned, how it compares (analysis.baseline). Archived runs only when
        `archived`; runs in the trash never. `where` is a filter expression (analysis.filters:
        `learning_rate < 0.01 and tag:muon`); a bad one raises FilterError naming its bad part."""
        from cifar_core.analysis import baseline, diagnosis, filters
        from cifar_core.jobs import keeping, results

        filters.parse(where)  # a bad expression fails before any work
        with self._queue() as conn:
            board = results.leaderboard(conn) if run_ids is None else results.leaderboard_rows(conn, run_ids)
            board = keeping.hidden(conn, archived).rows(board)
            specs = results.run_specs(conn, board["run"].tolist()) if where and filters.needs_specs(where) else {}
            board = filters.apply(board, where, specs)
            titles = diagnosis.verdicts(conn, board["run"].tolist())[["run", "title"]].rename(columns={"title": "diagnosis"})
            board = board.merge(titles, on="run", how="left")
            pinned = self._baseline(conn)
            if pinned is not None:
                board = baseline.against(conn, board, pinned)
        return board

    def group_seeds(self, board: pd.DataFrame | None = None) -> pd.DataFrame:
        """The succeeded runs of `board` (default: every shown run) pooled per configuration (every
        setting but the seed and the name, on one data source): n, mean, std, min–max, a readable
        label, and the seed group's own tags and note."""
        from cifar_core.jobs import results

        board = self.leaderboard() if board is None else board
        with self._store() as conn:
            specs = results.run_specs(conn, board.loc[board["status"] == queue.SUCCEEDED, "run"].tolist())
            tags, notes = store.config_label_rows(conn)
        pooled = results.group_summary(board, specs)
        own: dict[str, list[str]] = {}
        for r in tags:
            own.setdefault(r["config"], []).append(r["tag"])
        note_of = {r["config"]: r["notes_md"] for r in notes}
        return pooled.assign(tags=[own.get(c, []) for c in pooled["config"]],
                             notes=[note_of.get(c, "") for c in pooled["config"]])

    def run(self, run_id: int) -> results.RunDetail:
        """One run with its history, best epoch and diagnosis (which compares it with its siblings:
        runs of the same network trained with other settings)."""
        from cifar_core.analysis import diagnosis
        from cifar_core.jobs import results

        with self._store() as conn:
            detail = results.run_detail(conn, int(run_id))
            siblings = diagnosis.siblings_of(conn, int(run_id)) if not detail.history.empty else []
        verdict = (diagnosis.diagnose_run(detail.history, detail.job.spec, siblings, detail.job.state)
                   if not detail.history.empty else None)
        return results.RunDetail(**{**detail.__dict__, "diagnosis": verdict})

    def histories(self, run_ids: list[int]) -> pd.DataFrame:
        from cifar_core.jobs import results

        with self._store() as conn:
            return results.histories(conn, run_ids)

    def specs(self, run_ids: list[int]) -> dict[int, dict]:
        from cifar_core.jobs import results

        with self._store() as conn:
            return results.run_specs(conn, run_ids)

    def sweeps(self) -> pd.DataFrame:
        from cifar_core.analysis import sweeps

        with self._store() as conn:
            return sweeps.list_sweeps(conn)

    def sweep_number(self, group_id: int) -> int:
        """A sweep's number among the sweeps, from 1 (its group id also counts repeat sets)."""
        with self._store() as conn:
            return store.group_number(conn, group_id, queue.GROUP_SWEEP)

    def sweep_group(self, number: int) -> int:
        """The group id of sweep `number` (as the CLI and the pages number sweeps, from 1)."""
        with self._store() as conn:
            group = store.group_by_number(conn, int(number), queue.GROUP_SWEEP)
            count = len(store.group_rows(conn, queue.GROUP_SWEEP))
        if group is None:
            raise NotFound(f"no sweep {number}: there are {count}, numbered from 1 (the Sweeps page lists them)"
                           if count else f"no sweep {number}: none yet; `python -m cifar_core sweep` starts one")
        return group

    def replay_sweep(self, group_id: int, pruner, shuffles: int = 0, seed: int = 0):
        """What `pruner` (a search.config.PrunerConfig) would have done to a sweep's recorded curves,
        in the order its trials ran and in `shuffles` seeded shuffles (search.replay.ReplayResult)."""
        from cifar_core.jobs import sweeping
        from cifar_core.search.replay import replay

        with self._store() as conn:
            known = sweeping.trials(conn, group_id)
        return replay(pruner, known, shuffles, seed)

    def sweep_status(self, group_id: int):
        """Where a searching sweep stands (analysis.sweeps.SearchStatus); None for one without a search."""
        from cifar_core.analysis import sweeps

        with self._store() as conn:
            return sweeps.search_status(conn, group_id)

    def sweep_search_figures(self, group_id: int, archived: bool = False):
        """A searching sweep's trial curves, rung table and Pareto front (analysis.sweeps.SearchFigures),
        the curves and rungs without the trials keeping.Hidden leaves out."""
        from cifar_core.analysis import sweeps
        from cifar_core.jobs import keeping

        with self._store() as conn:
            return sweeps.search_figures(conn, group_id, keeping.hidden(conn, archived).runs)

    def stop_sweep(self, group_id: int) -> str:
        """Stop a sweep: its queued trials are cancelled, its running ones stop after their current
        epoch (keeping it and their checkpoint), paused ones stay paused; `resume_sweep` goes on.
        What it did, in words."""
        from cifar_core.jobs import sweeping

        number = self.sweep_number(group_id)
        with self._store() as conn:
            try:
                halted = sweeping.stop(conn, group_id, f"sweep {number} stopped by hand")
            except LabError as exc:
                raise LabError(f"sweep {number}: {exc}") from None
            running = sum(1 for j in store.group_trials(conn, group_id)[0] if j["state"] == queue.RUNNING)
        return (f"sweep {number} stopped: {len(halted)} queued trial(s) cancelled, {running} running one(s) stop after "
                f"their current epoch; `sweep-resume {number}` goes on")

    def resume_sweep(self, group_id: int, max_trials: int | None = None, max_epochs: int | None = None,
                     max_minutes: float | None = None) -> str:
        """Resume a stopped sweep, or one whose budget is spent, with its budget raised to these
        (None: unchanged): the trials the stop cancelled go on from their checkpoints, and its
        sampler asks for more trials in the new room. What it did, in words."""
        from cifar_core.analysis import sweeps
        from cifar_core.jobs import sweeping

        number = self.sweep_number(group_id)
        with self._store() as conn:
            try:
                done = sweeping.resume(conn, group_id, max_trials=max_trials, max_epochs=max_epochs,
                                       max_minutes=max_minutes)
            except LabError as exc:
                raise LabError(f"sweep {number}: {exc}") from None
            status = sweeps.search_status(conn, group_id)
        budget = f"; budget: {', '.join(status.budget)}" if status is not None else ""
        idle = ""
        if status is not None and status.idle:
            if status.trials >= status.max_trials:
                left = f"its {status.max_trials} trials have started; raise max trials"
            elif done.search.sampler == "grid":
                left = "every combination of its grid has run"
            else:
                left = "its sampler proposed none"
            idle = f"; nothing new to run: {left}"
        return (f"sweep {number} resumed: {len(done.requeued)} stopped trial(s) queued again, {len(done.added)} new "
                f"trial(s){budget}{idle}")

    def front_sweeps(self) -> list[tuple[int, str]]:
        """The two-objective sweeps, newest first: (group id, what to call it)."""
        from cifar_core.analysis import sweeps

        with self._store() as conn:
            return sweeps.front_sweeps(conn)

    def sweep_front(self, group_id: int):
        """A two-objective sweep's Pareto front (analysis.sweeps.SweepFront); None for one objective."""
        from cifar_core.analysis import sweeps

        with self._store() as conn:
            return sweeps.sweep_front(conn, group_id)

    def run_seeds_of_best(self, group_id: int, seeds: int = 3) -> Submitted:
        """Queue `seeds` repeats of the best trial so far of a searching sweep, with new seeds (the
        trial's own + 1 onwards), grouped as repeats: the leaderboard then pools them with the trial
        and shows the seed noise of the best setting."""
        from cifar_core.analysis import sweeps

        with self._store() as conn:
            status = sweeps.search_status(conn, group_id)
            if status is None or status.best_run is None:
                raise LabError("no trial of this sweep has a validation accuracy yet: wait for its first epoch")
            doc, source, seed = sweeps.seeds_of(conn, status.best_run)
        return self.submit(doc, source, repeats=seeds, seed=seed)

    def sweep_report(self, group_id: int):
        """A sweep's report (analysis.report.Report): how it searched, its trials, its figures."""
        from cifar_core.analysis import sweep_report

        with self._store() as conn:
            return sweep_report.build(conn, group_id)

    def write_sweep_report(self, group_id: int, out=None) -> tuple[Path, Path]:
        """Write a sweep's report as Markdown and HTML (default: <lab home>/reports/sweep-N-<time>/)."""
        from cifar_core.analysis import report

        return report.write_report(self.sweep_report(group_id), out, f"sweep-{self.sweep_number(group_id)}")

    def sweep_report_html(self, group_id: int) -> str:
        """A sweep's report as one self-contained HTML page (the Sweeps page's download)."""
        from cifar_core.analysis import report

        return report.render_html(self.sweep_report(group_id))

    def sweep(self, group_id: int, archived: bool = False) -> SweepResults:
        """A sweep's description, its trials' table (without the ones keeping.Hidden leaves out, said
        in `left_out`) and which setting mattered."""
        from cifar_core.analysis import sweeps
        from cifar_core.jobs import keeping

        with self._store() as conn:
            return sweeps.sweep_results(conn, group_id, keeping.hidden(conn, archived))

    # ------------------------------------------------------------ keeping runs in order
    # One entry point per action (tag, untag, set_note, archive, unarchive, delete, restore_run,
    # empty_trash, set_baseline), each on run ids, so a layer of who-may-do-what can wrap them.

    @acts("tag", run="run_ids", detail=" ".join)
    def tag(self, run_ids: list[int], tags) -> list[str]:
        """Add tags (checked against keeping.TAG_RULE) to runs; the tags as stored."""
        from cifar_core.jobs import keeping

        with self._store() as conn:
            return keeping.tag_runs(conn, run_ids, tags)

    @acts("untag", run="run_ids", detail=" ".join)
    def untag(self, run_ids: list[int], tags) -> list[str]:
        """Remove tags from runs; the tags as checked."""
        from cifar_core.jobs import keeping

        with self._store() as conn:
            return keeping.tag_runs(conn, run_ids, tags, remove=True)

    @acts("note", run="run_id")
    def set_note(self, run_id: int, text: str | None) -> None:
        """A run's Markdown note (empty text removes it)."""
        from cifar_core.jobs import keeping

        note = keeping.clean_note(text)
        with self._store() as conn:
            [run] = keeping.known_runs(conn, [run_id])
            with store.transaction(conn):
                store.set_run_note(conn, run, note)

    @acts("tag_group", detail=" ".join)
    def tag_group(self, config_key: str, tags, remove: bool = False) -> list[str]:
        """Tag (or untag) a seed group: the configuration `config_key` (the leaderboard's `config`);
        every run of it, now and later, shows the tags."""
        from cifar_core.jobs import keeping

        tags = keeping.clean_tags(tags)
        with self._store() as conn:
            with store.transaction(conn):
                (store.remove_config_tags if remove else store.add_config_tags)(conn, self._config(conn, config_key), tags)
        return tags

    @acts("note_group")
    def set_group_note(self, config_key: str, text: str | None) -> None:
        from cifar_core.jobs import keeping

        note = keeping.clean_note(text)
        with self._store() as conn:
            with store.transaction(conn):
                store.set_config_note(conn, self._config(conn, config_key), note)

    def _config(self, conn: sqlite3.Connection, config_key: str) -> str:
        from cifar_core.jobs import results

        known = set(results.leaderboard(conn)["config"])
        if config_key not in known:
            raise NotFound(f"no seed group (configuration) {config_key!r}; the leaderboard's `config` column and "
                           "`python -m cifar_core leaderboard --group-seeds --json` name them")
        return config_key

    @acts("archive", run="run_ids")
    def archive(self, run_ids: list[int]) -> None:
        """Hide runs from every page and list by default (`unarchive` shows them again)."""
        self._archive(run_ids, True)

    @acts("unarchive", run="run_ids")
    def unarchive(self, run_ids: list[int]) -> None:
        self._archive(run_ids, False)

    def _archive(self, run_ids: list[int], archived: bool) -> None:
        from cifar_core.jobs import keeping

        with self._store() as conn:
            ids = keeping.known_runs(conn, run_ids)
            with store.transaction(conn):
                store.set_archived(conn, ids, store.now() if archived else None)

    def delete_warnings(self, run_ids: list[int]) -> list[str]:
        """What depends on the runs: an export made from one, the model choice recommending one, the
        pinned baseline. `delete` refuses while any holds unless forced."""
        from cifar_core.analysis import choice
        from cifar_core.jobs import keeping

        with self._store() as conn:
            ids = keeping.known_runs(conn, run_ids)
            found = [f"run {r['run_id']} was exported to {r['path']} (the export keeps its own copy of the model)"
                     for r in store.export_rows(conn, ids)]
            if store.baseline_run(conn) in ids:
                found.append(f"run {store.baseline_run(conn)} is the pinned baseline (deleting it unpins it)")
            for source in {r["data_source"] for r in store.board_rows(conn, ids) if r["status"] == queue.SUCCEEDED}:
                try:  # the recommendation the Model choice page shows by default
                    pick = choice.choose(conn, source, hide=keeping.hidden(conn).runs).recommendation
                except LabError:
                    continue  # no choice can be made on that source (missing predictions): nothing depends on it
                if pick is not None and pick.run in ids:
                    found.append(f"run {pick.run} is the model choice's recommendation for production on "
                                 f"{source}; deleting it changes the recommendation")
        return found

    @acts("delete", run="run_ids", detail=lambda warnings: "; ".join(warnings))
    def delete(self, run_ids: list[int], force: bool = False) -> list[str]:
        """Move finished runs, with their files, to the trash (`restore_run` brings them back until
        `empty_trash`). Refuses a queued, running or paused run (cancel it first) and, unless
        `force`, a run something depends on (delete_warnings), naming it. The warnings overridden."""
        from cifar_core.jobs import keeping

        with self._store() as conn:
            ids = keeping.known_runs(conn, run_ids)
            keeping.refuse_active(conn, ids)
        warnings = self.delete_warnings(ids)
        if warnings and not force:
            raise LabError("; ".join(warnings) + ". Delete anyway with force (`delete --force`), or keep the run")
        with self._store() as conn:
            for run in ids:
                keeping.move_to_trash(conn, run)
            if store.baseline_run(conn) in ids:
                with store.transaction(conn):
                    store.put_baseline(conn, None)
        return warnings

    @acts("restore_run", run="run_ids")
    def restore_run(self, run_ids: list[int]) -> None:
        """Bring runs back from the trash, their files to their run folders."""
        from cifar_core.jobs import keeping

        with self._store() as conn:
            for run in keeping.known_runs(conn, run_ids):
                keeping.restore_from_trash(conn, run)

    def trash(self) -> list:
        """The runs in the trash (jobs.keeping.TrashedRun), oldest id first."""
        from cifar_core.jobs import keeping

        with self._store() as conn:
            return keeping.trashed(conn)

    @acts("empty_trash", made=lambda ids: ids)
    def empty_trash(self) -> list[int]:
        """Remove the trashed runs' files and records for good; their ids."""
        from cifar_core.jobs import keeping

        with self._store() as conn:
            return keeping.empty_trash(conn)

    @acts("baseline", run="run_id")
    def set_baseline(self, run_id: int | None) -> None:
        """Pin a succeeded run as the baseline every leaderboard row is compared with (None unpins)."""
        from cifar_core.jobs import keeping

        with self._store() as conn:
            if run_id is not None:
                [run] = keeping.known_runs(conn, [run_id])
                state = queue.get_job(conn, run).state
                if state != queue.SUCCEEDED:
                    raise LabError(f"run {run} is {state}; pin a succeeded run as the baseline (it needs a test accuracy)")
            with store.transaction(conn):
                store.put_baseline(conn, run_id)

    def baseline(self) -> int | None:
        """The pinned baseline run, if any (never one in the trash)."""
        with self._store() as conn:
            return self._baseline(conn)

    def _baseline(self, conn: sqlite3.Connection) -> int | None:
        pinned = store.baseline_run(conn)
        return None if pinned is None or pinned in store.hidden_run_ids(conn, archived=False) else pinned

    def notes(self, run_id: int) -> tuple[list[str], str]:
        """A run's own tags and its note."""
        from cifar_core.jobs import keeping

        with self._store() as conn:
            [run] = keeping.known_runs(conn, [run_id])
            [row] = store.run_keeping_rows(conn, [run])
            return [r["tag"] for r in store.run_tag_rows(conn, [run])], row["notes_md"] or ""

    # ------------------------------------------------------------ choosing a model

    def refit(self, run_id: int) -> Submitted:
        """Queue run `run_id`'s configuration trained on train + holdout (no validation), its test
        set scored once at the end, as a refit grouped apart from the holdout runs
        (analysis/refit.py). LabError, saying what to do, for a run that is not finished, is a
        refit already, or validated on the test set."""
        from cifar_core.analysis import refit

        with self._store() as conn:
            doc, source, group = refit.refit_request(conn, int(run_id))
        return self.enqueue([doc], group, source)

    def sources(self, archived: bool = False) -> list[str]:
        """Data sources of the succeeded runs shown (keeping.Hidden), most recently used first."""
        from cifar_core.analysis import choice
        from cifar_core.jobs import keeping

        with self._store() as conn:
            return choice.sources(conn, keeping.hidden(conn, archived).runs)

    def scorecard(self, source: str | None = None, archived: bool = False, spare: Collection[int] = ()) -> pd.DataFrame:
        """The succeeded runs' deployment scorecard (archived ones only when `archived`, or named in
        `spare`)."""
        from cifar_core.analysis import choice
        from cifar_core.jobs import keeping

        with self._store() as conn:
            return choice.scorecard(conn, source, hide=keeping.hidden(conn, archived).sparing(spare).runs)

    def choose(self, source: str | None = None, run_ids: list[int] | None = None, archived: bool = False) -> choice.Choice:
        """The model choice among the succeeded runs shown (archived ones only when `archived`)."""
        from cifar_core.analysis import choice
        from cifar_core.jobs import keeping

        with self._store() as conn:
            return choice.choose(conn, source, run_ids, hide=keeping.hidden(conn, archived).runs)

    def measure(self, run_ids: list[int], rounds: int = 5, repeats: int = 50, timeout: float = 600) -> choice.Measurement:
        """Measure the runs' models together (interleaved rounds, see `choice.measure_runs`) in a
        child process, `python -m cifar_core measure ... --json`, so TensorFlow never loads into the
        caller (the Streamlit server); waits for it and returns what it stored. LabError with the
        child's own error line when it fails."""
        from cifar_core.analysis import choice

        ids = [str(int(r)) for r in run_ids]
        if not ids:
            raise LabError("no runs to measure; give at least one run id")
        args = ["measure", *ids, "--rounds", str(int(rounds)), "--repeats", str(int(repeats)), "--json"]
        too_long = f"measuring runs {', '.join(ids)} took over {timeout:.0f} s; measure fewer runs or rounds"
        return choice.Measurement.from_dict(config.run_cli_json(args, timeout, too_long))

    def measure_here(self, run_ids: list[int], rounds: int = 5, repeats: int = 50) -> choice.Measurement:
        """`measure` in this process (it loads TensorFlow): what the CLI's `measure` runs."""
        from cifar_core.analysis import choice

        with self._store() as conn:
            return choice.measure_runs(conn, run_ids, rounds, repeats)

    @acts("export", run="run_id", detail=lambda result: f"{result.name} version {result.version}")
    def export(self, run_id: int, out_dir=None, name: str | None = None, version: int | None = None):
        """Export a succeeded run's model as .keras, a TF Serving SavedModel and .tflite, all in a new
        folder <out>/<name>/<version>/, each loaded back and checked on test images. Default
        folder: <lab home>/exports; name: "<experiment>-run<id>"; version: the next free one.
        Nothing that exists is replaced. Runs `export_here` in the model helper
        (`analysis.helper`), so TensorFlow never loads into the caller (the Streamlit server)."""
        from cifar_core.analysis import helper

        return helper.call("export", run_id, out_dir, name, version, timeout=EXPORT_TIMEOUT)

    @acts("export", run="run_id", detail=lambda result: f"{result.name} version {result.version}")
    def export_here(self, run_id: int, out_dir=None, name: str | None = None, version: int | None = None):
        """`export` in this process (it loads TensorFlow): what the helper and the CLI's `export` run."""
        from cifar_core.analysis import deploy
        from cifar_core.analysis import prediction

        with self._store() as conn:
            model_info = prediction.trained_model(conn, int(run_id))
        out = Path(out_dir).expanduser() if out_dir is not None else deploy.exports_dir()
        name = name or deploy.export_name(model_info.name, int(run_id))
        version = version if version is not None else deploy.next_version(out, name)
        deploy.check_export_target(out, name, version)  # the checks export_model makes, before TensorFlow loads
        sample = deploy.export_sample(load_dataset(model_info.data_source).x_test)
        result = deploy.export_model(model_info.path, out, name, version, sample_x=sample)
        with self._store() as conn, store.transaction(conn):
            store.record_export(conn, int(run_id), str(Path(result.serving_base) / str(result.version)), store.now())
        return result

    def stored_predictions(self, run_id: int) -> prediction.StoredPredictions:
        from cifar_core.analysis import prediction

        with self._store() as conn:
            return prediction.stored_predictions(conn, int(run_id))

    def seed_pair(self, run_a: int, run_b: int) -> prediction.SeedPair | None:
        """When runs a and b are seeds of one configuration: their seeds and the spread of that
        configuration's finished seeds (for `prediction.compare_runs`); None otherwise."""
        from cifar_core.analysis import prediction
        from cifar_core.jobs import results

        with self._store() as conn:
            board = results.leaderboard(conn)
        return prediction.seed_pair(board, int(run_a), int(run_b))

    def predict_image(self, run_ids: list[int], image, class_names, k: int = 5, labels=None) -> pd.DataFrame:
        """The top `k` classes of `image` for each run (`prediction.predict_image`), computed in the
        model helper (`analysis.helper`): TensorFlow never loads into the caller, and the helper keeps
        the models loaded between requests."""
        from cifar_core.analysis import helper

        return helper.call("predict_image", list(run_ids), image, class_names, k, labels, timeout=PREDICT_TIMEOUT)

    def predict_image_here(self, run_ids: list[int], image, class_names, k: int = 5, labels=None) -> pd.DataFrame:
        """`predict_image` in this process (it loads TensorFlow): what the helper runs."""
        from cifar_core.analysis import prediction

        with self._store() as conn:
            return prediction.predict_image(conn, run_ids, image, class_names, k, labels)


# ---------------------------------------------------------------- waiting for jobs


def start_worker_if_none() -> int | None:
    """Start a worker that exits when the queue is empty, unless one is alive. Returns its pid, or None."""
    from cifar_core.jobs.launcher import ensure_worker

    return ensure_worker(("--exit-when-idle",))


@dataclass
class _Seen:
    state: str = ""
    epoch: int = 0


def wait_for_jobs(conn: sqlite3.Connection, job_ids: list[int], progress: Callable[[str], None] = print,
                  poll: float = POLL_SECONDS, timeout: float | None = None) -> list[queue.Job]:
    """Wait until every job is finished, reporting each finished epoch and state change; start a
    worker again if none is alive while jobs wait. Returns the final jobs."""
    from cifar_core.jobs.worker import list_workers

    seen = {j: _Seen() for j in job_ids}
    started = time.monotonic()
    restarts = 0
    last_worker_check = 0.0
    while True:
        jobs = [queue.get_job(conn, j) for j in job_ids]
        for job in jobs:
            _report_job(conn, job, seen[job.id], sum(j.finished for j in jobs), len(jobs), progress)
        if all(j.finished for j in jobs):
            return jobs
        now = time.monotonic()
        if now - last_worker_check > 20:  # a worker takes a few seconds to register
            last_worker_check = now
            if not any(w.alive for w in list_workers(conn)):
                if restarts >= WORKER_RESTARTS:
                    raise LabError(f"no worker is alive after {restarts} starts; see {config.logs_dir() / 'worker.log'}")
                pid = start_worker_if_none()
                restarts += 1
                progress(f"no worker was alive: started one (pid {pid})" if pid else "a worker is running")
        if timeout is not None and now - started > timeout:
            raise LabError(f"jobs {', '.join(map(str, job_ids))} did not finish within {timeout:.0f} s; they keep "
                           "running, `python -m cifar_core runs` shows them")
        time.sleep(poll)


def _report_job(conn, job: queue.Job, seen: _Seen, done: int, total: int, progress) -> None:
    from cifar_core.analysis.report import _pct
    from cifar_core.jobs import results

    if job.epoch > seen.epoch:
        hist = results.run_history(conn, job.id)
        for rec in hist[hist["epoch"] > seen.epoch].itertuples():
            progress(f"#{job.id} {job.name}: epoch {int(rec.epoch)}/{job.epochs} train acc {_pct(rec.accuracy)} "
                     f"val acc {_pct(rec.val_accuracy)} ({rec.seconds:.1f} s)")
        seen.epoch = job.epoch
    if job.state != seen.state:
        seen.state = job.state
        if job.state == queue.RUNNING:
            progress(f"#{job.id} {job.name}: training ({job.epochs} epochs)")
        elif job.state == queue.SUCCEEDED:
            acc = store.run_row(conn, job.id)["test_accuracy"]
            progress(f"#{job.id} {job.name}: succeeded, test accuracy {_pct(acc)} ({done}/{total} finished)")
        elif job.state in queue.TERMINAL:
            progress(f"#{job.id} {job.name}: {job.state}: {job.error} ({done}/{total} finished)")
