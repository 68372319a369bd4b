"""The store side of a search: a sweep's trials as the search core reads them, the stop decision
after each recorded epoch, the promotion of paused trials, and the next trials of a sampler that
learns from the earlier ones.

Called from jobs/attempt.py, the attempt protocol that local workers and the Ray dispatcher share,
so every decision is made in one place, from what the store holds, whatever trained the epoch.
The store is the one source of truth: the search core (cifar_core/search) rebuilds Optuna's
in-memory study from these records at each decision, so a study survives every restart, kill or
lost node the queue survives, and a crashed and retried trial is one trial (one job, one curve).

A sweep searches when its group's detail holds a "search" (a `SearchConfig`); sweeps without one
(grid or random draws, every trial to its last epoch) are left alone.
"""

from __future__ import annotations

import json
import logging
import sqlite3

from cifar_core.jobs import queue, store

log = logging.getLogger("cifar_lab.search")

ACTIVE_TRIALS = 2  # a sampler that learns keeps this many trials queued or running, asking for the next as one ends


def search_of(conn: sqlite3.Connection, group_id: int | None):
    """The sweep's `SearchConfig`, or None when the group does not search."""
    if group_id is None:
        return None
    detail = store.group_detail(conn, group_id) or {}
    if "search" not in detail:
        return None
    from cifar_core.search.config import SearchConfig

    return SearchConfig.from_dict(detail["search"])


def trials(conn: sqlite3.Connection, group_id: int) -> list:
    """The sweep's trials in the order they were submitted, as the search core reads them: a
    failed or cancelled trial is left out (Optuna ignores failed trials)."""
    from cifar_core.search import config as search

    states = {queue.QUEUED: search.RUNNING, queue.RUNNING: search.RUNNING, queue.SUCCEEDED: search.COMPLETE,
              queue.PRUNED: search.PRUNED, queue.PAUSED: search.PAUSED}
    jobs, rows = store.group_trials(conn, group_id)
    curves: dict[int, dict[int, float]] = {}
    for r in rows:
        if r["val_accuracy"] is not None:
            curves.setdefault(r["run_id"], {})[int(r["epoch"])] = float(r["val_accuracy"])
    out = []
    for j in jobs:
        if j["state"] not in states:
            continue
        params = json.loads(j["spec_json"]).get("sweep_params", {})
        out.append(search.TrialCurve(j["id"], params, curves.get(j["id"], {}), states[j["state"]]))
    return out


def after_epoch(conn: sqlite3.Connection, lease: queue.Lease, epoch: int) -> str:
    """The stop decision for the attempt `lease` holds, which has just stored `epoch`: KEEP_GOING,
    or STOP_PRUNED / STOP_PAUSED (recorded in the store with the reason in words, so that the job
    ends so however its attempt ends). Paused trials that now rank high enough are promoted."""
    job = queue.get_job(conn, lease.job_id)
    search = search_of(conn, job.group_id)
    if search is None or search.pruner.kind == "none":
        return queue.KEEP_GOING
    from cifar_core.search.config import PAUSE
    from cifar_core.search.pruners import decide

    known = trials(conn, job.group_id)
    decision = decide(search.pruner, known, job.id, epoch)
    _promote(conn, search, known)
    if not decision.stops:
        return queue.KEEP_GOING
    action = queue.PAUSE if decision.action == PAUSE else queue.PRUNE
    if not queue.decide_stop(conn, lease, action, decision.reason):
        return queue.STOP_LOST
    log.info("job %s: %s", job.id, decision.reason)
    return queue.STOP_PAUSED if action == queue.PAUSE else queue.STOP_PRUNED


def after_trial(conn: sqlite3.Connection, job_id: int) -> None:
    """A trial ended (or paused): promote the paused trials that now rank in the top 1/eta of
    their rung, and let a sampler that learns ask for the next trial."""
    job = queue.get_job(conn, job_id)
    search = search_of(conn, job.group_id)
    if search is None:
        return
    known = trials(conn, job.group_id)
    _promote(conn, search, known)
    if search.sampler == "tpe":
        _top_up(conn, job.group_id, search, known)


def _promote(conn: sqlite3.Connection, search, known: list) -> None:
    from cifar_core.search.promotion import promotions

    for p in promotions(search.pruner, known):
        if queue.promote(conn, p.trial_id, f"promoted: {p.reason}"):
            log.info("job %s %s", p.trial_id, p.reason)


def _top_up(conn: sqlite3.Connection, group_id: int, search, known: list) -> None:
    """Ask the sweep's sampler for as many trials as keep ACTIVE_TRIALS going, within its budget,
    and queue them in the sweep's group."""
    from cifar_core.search import samplers
    from cifar_core.search.config import COMPLETE, PAUSED, PRUNED
    from cifar_core.spec.space import documents, load_space

    ended = [t for t in known if t.state in (COMPLETE, PRUNED, PAUSED)]
    jobs, epochs = store.group_trials(conn, group_id)
    active = sum(1 for j in jobs if j["state"] in (queue.QUEUED, queue.RUNNING))
    room = min(ACTIVE_TRIALS - active, search.max_trials - len(jobs))
    if room <= 0 or spent(search, jobs, epochs):
        return
    detail = store.group_detail(conn, group_id)
    space = load_space(detail["space"])
    whole = samplers.whole_paths(detail["base"], space)
    chosen = samplers.next_params(space, search.sampler, search.seed, known, room, whole)
    if not chosen:
        return
    docs = documents(detail["base"], chosen, first=len(jobs) + detail.get("first", 1))
    source = queue.get_job(conn, jobs[0]["id"]).data_source
    queue.add_to_group(conn, group_id, [(d, _params(d, detail)) for d in docs], source)
    log.info("sweep %s: %s more trial(s) from the %s sampler after %s ended", group_id, len(docs), search.sampler,
             len(ended))


def _params(doc: dict, detail: dict) -> int:
    from cifar_core.spec.summary import summarize
    from cifar_core.spec.validate import parse_spec

    shape, classes = tuple(detail["input_shape"]), int(detail["num_classes"])
    return summarize(parse_spec(doc, shape, classes), shape, classes).total_params


def spent(search, jobs: list, epochs: list) -> bool:
    """Whether the sweep has used its budget in epochs or minutes of training (its trials' train
    time summed over attempts), from its jobs and stored epochs (`store.group_trials`)."""
    if search.max_epochs is not None and len(epochs) >= search.max_epochs:
        return True
    seconds = sum(j["train_seconds"] or 0.0 for j in jobs)
    return search.max_minutes is not None and seconds >= 60 * search.max_minutes
