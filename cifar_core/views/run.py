"""The Run page's view: which run it opens when the link names none."""

from __future__ import annotations

from collections.abc import Sequence

from cifar_core.jobs.queue import QUEUED, Job


def default_run(jobs: Sequence[Job]) -> int:
    """The run the page opens by default, from `jobs` newest first: the newest one with something to
    show (started, or queued again after training some epochs); a run still waiting in the queue
    only when every run is."""
    return next((j.id for j in jobs if j.state != QUEUED or j.epoch > 0), jobs[0].id)
