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
from dataclasses import dataclass

from cifar_core.errors import LabError
from cifar_core.jobs import queue, store

log = logging.getLogger("cifar_lab.search")

ACTIVE_TRIALS = 2  # a sampler that learns keeps this many trials queued or running, asking for the next as one ends


def search_of(conn: sqlite3.Connection, group_id: int | None):
    """The sweep's `SearchConfig`, or None when the group does not search."""
    return None if group_id is None else _search(store.group_detail(conn, group_id) or {})


def _search(detail: dict):
    if "search" not in detail:
        return None
    from cifar_core.search.config import SearchConfig

    return SearchConfig.from_dict(detail["search"])


def trials(conn: sqlite3.Connection, group_id: int, objective2: str | None = None, read=None) -> list:
    """The sweep's trials in the order they were submitted, as the search core reads them: a
    failed or cancelled trial is left out (Optuna ignores failed trials). With `objective2`
    (latency | macs) a complete trial's `value2` is its run's figure. `read`: the sweep's
    `store.group_trials`, when the caller has it already."""
    from cifar_core.search import config as search

    states = {queue.QUEUED: search.RUNNING, queue.RUNNING: search.RUNNING, queue.SUCCEEDED: search.COMPLETE,
              queue.PRUNED: search.PRUNED, queue.PAUSED: search.PAUSED}
    jobs, rows = read or store.group_trials(conn, group_id)
    column = search.OBJECTIVE2_COLUMNS.get(objective2)
    curves: dict[int, dict[int, float]] = {}
    for r in rows:
        if r["val_accuracy"] is not None:
            curves.setdefault(r["run_id"], {})[int(r["epoch"])] = float(r["val_accuracy"])
    out = []
    for j in jobs:
        if j["state"] not in states:
            continue
        params = json.loads(j["sweep_params"]) if j["sweep_params"] else {}
        value2 = j[column] if column and j["state"] == queue.SUCCEEDED else None
        out.append(search.TrialCurve(j["id"], params, curves.get(j["id"], {}), states[j["state"]],
                                     value2=None if value2 is None else float(value2)))
    return out


def after_epoch(conn: sqlite3.Connection, lease: queue.Lease, epoch: int) -> str:
    """The stop decision for the attempt `lease` holds, which has just stored `epoch`: KEEP_GOING,
    or STOP_PRUNED / STOP_PAUSED (recorded in the store with the reason in words, so that the job
    ends so however its attempt ends), or STOP_CANCEL when its sweep was stopped or has just spent
    its budget (the trial ends cancelled after this epoch; resuming the sweep queues it again).
    When the epoch was judged at a rung, the paused trials that now rank high enough are promoted."""
    job = queue.get_job(conn, lease.job_id)
    if job.group_id is None:
        return queue.KEEP_GOING
    detail = store.group_detail(conn, job.group_id) or {}
    search = _search(detail)
    why = _halted(conn, job.group_id, detail, search)
    if why is not None and epoch < job.epochs:  # its last epoch: let it finish and score the test set
        reason = f"{why}: stopped after epoch {epoch}; it goes on from its checkpoint when the sweep is resumed"
        return queue.STOP_CANCEL if queue.decide_stop(conn, lease, queue.HALT, reason) else queue.STOP_LOST
    if search is None or search.pruner.kind == "none" or why is not None:
        return queue.KEEP_GOING
    from cifar_core.search.config import PAUSE
    from cifar_core.search.pruners import decide

    known = trials(conn, job.group_id)
    decision = decide(search.pruner, known, job.id, epoch)
    if decision.rung is not None:  # a value recorded at a rung may make room there; other epochs change no rank
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
    their rung, and let a sampler that learns ask for the next trial; nothing while the sweep is
    stopped or once it spent its budget (which stops it). A trial its sweep halted goes back to
    the queue if the sweep was resumed meanwhile."""
    from cifar_core.search.config import LEARNING_SAMPLERS

    job = queue.get_job(conn, job_id)
    if job.group_id is None:
        return
    detail = store.group_detail(conn, job.group_id) or {}
    search = _search(detail)
    if _halted(conn, job.group_id, detail, search) is not None:
        return
    if job.state == queue.CANCELLED:
        queue.requeue_halted(conn, [job.id], "its sweep was resumed while it stopped; it goes on from its checkpoint")
    if search is None:
        return
    read = store.group_trials(conn, job.group_id)
    known = trials(conn, job.group_id, search.objective2, read)
    _promote(conn, search, known)
    if search.sampler in LEARNING_SAMPLERS:
        _top_up(conn, job.group_id, search, known, read)


def _halted(conn: sqlite3.Connection, group_id: int, detail: dict, search) -> str | None:
    """Why the sweep is halted (stopped by hand, or its budget spent, which stops it now), or None."""
    if detail.get("stopped"):
        return detail["stopped"]
    if search is None or (search.max_epochs is None and search.max_minutes is None):
        return None
    jobs, epochs = store.group_trials(conn, group_id)
    why = spent_why(search, jobs, epochs, store.now())
    if why is not None:
        try:
            stop(conn, group_id, why)
        except LabError:  # another trial's epoch stopped it first
            pass
    return why


def stop(conn: sqlite3.Connection, group_id: int, why: str) -> list[int]:
    """Stop the sweep: `why` goes in its detail (the store is the truth), its queued trials are
    cancelled at once, its running ones after their next epoch (`after_epoch`), paused ones stay
    paused, nothing is promoted or asked for. The ids cancelled now. LabError if it is stopped."""
    with store.transaction(conn):
        detail = store.group_detail(conn, group_id)
        if detail.get("stopped"):
            raise LabError(f"it is stopped already ({detail['stopped']}); resume it to go on")
        store.set_group_detail(conn, group_id, {**detail, "stopped": why})
    jobs, _ = store.group_trials(conn, group_id)
    halted = queue.halt_queued(conn, [j["id"] for j in jobs if j["state"] == queue.QUEUED],
                               f"{why}: cancelled before it started; resuming the sweep queues it again")
    log.info("sweep %s stopped (%s): %s queued trial(s) cancelled", group_id, why, len(halted))
    return halted


@dataclass(frozen=True)
class Resumed:
    """What resuming a sweep did: trials queued again, new trials asked for, the budget now."""

    requeued: list[int]
    added: list[int]
    search: object | None  # its SearchConfig, with the new budget; None for a sweep that does not search


def resume(conn: sqlite3.Connection, group_id: int, **budget) -> Resumed:
    """Resume a stopped sweep (or one that spent its budget) with the budget raised as `budget`
    says (max_trials, max_epochs, max_minutes; None leaves one as it was): the new budget goes in
    its detail, the trials the stop cancelled go back to the queue (resuming from their
    checkpoints), paused trials may be promoted again, and its sampler fills the new room (TPE:
    two at a time as they end; grid and random: up to max_trials, never a combination twice).
    LabError, naming the fix, for a budget that is still spent."""
    detail = store.group_detail(conn, group_id)
    search = _search(detail)
    given = {k: v for k, v in budget.items() if v is not None}
    jobs, epochs = store.group_trials(conn, group_id)
    if given and search is None:
        raise LabError("it runs every trial of its space and has no budget: resume it without "
                       f"{', '.join('--' + k.replace('_', '-') for k in given)}")
    if search is not None:
        from cifar_core.search.config import SearchConfig

        search = SearchConfig.from_dict({**search.to_dict(), **given})
        if search.max_trials < len(jobs):
            raise LabError(f"max_trials={search.max_trials} is below the {len(jobs)} trials it started: resume it "
                           f"with --max-trials {len(jobs)} or more")
        why = spent_why(search, jobs, epochs, store.now())
        if why is not None:
            more = "--max-epochs" if why.endswith(f"epochs of {search.max_epochs}") else "--max-minutes"
            raise LabError(f"{why}: resume it with a larger {more}")
    with store.transaction(conn):
        detail = {k: v for k, v in store.group_detail(conn, group_id).items() if k != "stopped"}
        store.set_group_detail(conn, group_id, detail if search is None else {**detail, "search": search.to_dict()})
    halted = [j["id"] for j in jobs if j["state"] == queue.CANCELLED and j["stop_decision"]]
    requeued = queue.requeue_halted(conn, halted, "its sweep was resumed; it goes on from its checkpoint")
    added = []
    if search is not None:
        known = trials(conn, group_id, search.objective2)
        _promote(conn, search, known)
        added = _top_up(conn, group_id, search, known)
    log.info("sweep %s resumed: %s trial(s) queued again, %s new", group_id, len(requeued), len(added))
    return Resumed(requeued, added, search)


def _promote(conn: sqlite3.Connection, search, known: list) -> None:
    from cifar_core.search.promotion import promotions

    for p in promotions(search.pruner, known):
        if queue.promote(conn, p.trial_id, f"promoted: {p.reason}"):
            log.info("job %s %s", p.trial_id, p.reason)


def _top_up(conn: sqlite3.Connection, group_id: int, search, known: list, read: tuple | None = None) -> list[int]:
    """Ask the sweep's sampler for as many trials as keep ACTIVE_TRIALS going (TPE, NSGA-II) or fill
    max_trials (grid, random: a resumed sweep with a larger budget), within its budget, and queue
    them in the sweep's group; their ids. `read`: the sweep's `store.group_trials`, if at hand."""
    from cifar_core.search import config as search_config
    from cifar_core.search import samplers
    from cifar_core.spec.space import documents, load_space

    jobs, epochs = read or store.group_trials(conn, group_id)
    active = sum(1 for j in jobs if j["state"] in (queue.QUEUED, queue.RUNNING))
    room = search.max_trials - len(jobs)
    if search.sampler in search_config.LEARNING_SAMPLERS:
        room = min(room, ACTIVE_TRIALS - active)
    else:  # every trial it ever queued counts, failed and cancelled ones too: no combination twice
        seen = {t.trial_id for t in known}
        known = known + [search_config.TrialCurve(j["id"], json.loads(j["sweep_params"] or "{}"), {})
                         for j in jobs if j["id"] not in seen]
    if room <= 0 or spent_why(search, jobs, epochs, store.now()) is not None:
        return []
    detail = store.group_detail(conn, group_id)
    space = load_space(detail["space"])
    whole = samplers.whole_paths(detail["base"], space)
    chosen = samplers.next_params(space, search.sampler, search.seed, known, room, whole, search.population)
    if not chosen:
        return []
    docs = documents(detail["base"], chosen, first=len(jobs) + detail.get("first", 1))
    source = queue.get_job(conn, jobs[0]["id"]).data_source
    added = queue.add_to_group(conn, group_id, [(d, _params(d, detail)) for d in docs], source)
    log.info("sweep %s: %s more trial(s) from the %s sampler", group_id, len(docs), search.sampler)
    return added


def _params(doc: dict, detail: dict) -> int:
    from cifar_core.spec.summary import summarize
    from cifar_core.spec.validate import parse_spec

    shape, classes = tuple(detail["input_shape"]), int(detail["num_classes"])
    return summarize(parse_spec(doc, shape, classes), shape, classes).total_params


def spent_why(search, jobs: list, epochs: list, now: float) -> str | None:
    """Which budget the sweep has used up, in words ("sweep budget spent: 6 epochs of 6"), or None:
    epochs trained, or minutes of training (its trials' train time summed over attempts, running
    ones up to `now`), from its jobs and stored epochs (`store.group_trials`)."""
    if search.max_epochs is not None and len(epochs) >= search.max_epochs:
        return f"sweep budget spent: {len(epochs)} epochs of {search.max_epochs}"
    if search.max_minutes is None:
        return None
    seconds = sum((j["train_seconds"] or 0.0) + (max(0.0, now - (j["attempt_at"] or now))
                                                  if j["state"] == queue.RUNNING else 0.0) for j in jobs)
    if seconds >= 60 * search.max_minutes:
        return f"sweep budget spent: {seconds / 60:.1f} minutes of {search.max_minutes:g}"
    return None
