"""The Training page's picture of a Ray cluster, from the state a dispatcher records in the store
(no Ray needed: the dispatcher's side is covered by test_ray.py), and the app's choice of a Ray
dispatcher over a local worker."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from pagetools import open_page as _open
from pagetools import texts as _texts

from cifar_core.jobs import queue, store
from cifar_core.lab import Lab
from cifar_core.testing.datagen import tiny_spec

NODES = [
    {"node": "head-host/aaaa1111", "address": "10.0.0.1", "alive": True, "head": True, "cpus": 4.0, "cpus_free": 2.0,
     "gpus": 0.0, "gpus_free": 0.0, "jobs": [1]},
    {"node": "gpu-host/bbbb2222", "address": "10.0.0.2", "alive": True, "head": False, "cpus": 8.0, "cpus_free": 6.0,
     "gpus": 1.0, "gpus_free": 0.0, "jobs": [2]},
]


def _record(conn, updated_at=None):
    store.put_cluster(conn, {"address": "10.0.0.1:6379", "dispatcher": "ray-x", "updated_at": updated_at or store.now(),
                             "job_cpus": 2.0, "job_gpus": 0.0, "nodes": NODES})


def test_cluster_view_is_plain_data_and_none_without_a_dispatcher(home, conn):
    assert Lab().cluster() is None
    _record(conn)
    view = Lab().cluster()
    assert [n.node for n in view.nodes] == ["head-host/aaaa1111", "gpu-host/bbbb2222"] and not view.stale
    table = view.table
    assert list(table["node"]) == ["head-host/aaaa1111 (head)", "gpu-host/bbbb2222"]
    assert list(table["CPUs in use"]) == [2.0, 2.0] and list(table["GPUs free"]) == [0.0, 0.0]
    assert list(table["jobs"]) == ["#1", "#2"]
    _record(conn, updated_at=store.now() - 60)
    assert Lab().cluster().stale
    store.put_cluster(conn, None)
    assert Lab().cluster() is None


def test_training_page_shows_the_cluster_and_each_jobs_node(app_env, conn):
    [job_id] = queue.submit(conn, dict(tiny_spec(), epochs=4), "test-data").job_ids
    # A lease that outlasts a slow page run on a busy host (the page returns expired leases to the queue).
    lease = queue.claim(conn, "ray-x", lease_seconds=3600).lease
    queue.record_epoch(conn, lease, {"epoch": 1, "loss": 1.0, "accuracy": 0.5, "val_loss": 1.2, "val_accuracy": 0.4,
                                     "seconds": 3.0}, node="head-host/aaaa1111", pid=4242)
    _record(conn)
    at = _open("pages/training.py")
    assert "Ray cluster" in [s.value for s in at.subheader]
    [frame] = [d for d in at.dataframe if "node" in d.value.columns]
    assert list(frame.value["node"]) == ["head-host/aaaa1111 (head)", "gpu-host/bbbb2222"]
    assert "On head-host/aaaa1111" in _texts(at.caption)


def test_a_dispatcher_that_cannot_join_fails_once_and_the_training_page_says_why(home, small_data, monkeypatch):
    """A real dispatcher started by the app for an address where nothing listens: it fails at once
    (not after Ray's minutes of retries), says why on the Training page, and is not started again
    for that address until "Try again"; a local worker is started when the app no longer asks
    for Ray."""
    from cifar_core.jobs import launcher
    from cifar_core.testing.procs import wait_for

    monkeypatch.setenv("CIFAR_LAB_RAY", "127.0.0.1:1")
    pid = launcher.ensure_worker(("--exit-when-idle",))
    assert pid is not None
    problem = wait_for(launcher.start_problem, timeout=60, what="the dispatcher to say why it stopped")
    assert problem.address == "127.0.0.1:1" and "nothing answers at 127.0.0.1:1" in problem.reason
    wait_for(lambda: not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split(")")[1][:3],
             timeout=30, what="the dispatcher to exit")
    assert launcher.ensure_worker() is None  # once: not again for the same address

    monkeypatch.setenv("CIFAR_LAB_DATA", str(small_data))
    monkeypatch.setenv("CIFAR_LAB_NO_WORKER", "1")
    at = _open("pages/training.py")
    [error] = [e.value for e in at.error]
    assert error.startswith("The Ray dispatcher could not start, so no job runs on the cluster: cannot join the Ray "
                            "cluster at '127.0.0.1:1': nothing answers at 127.0.0.1:1")
    assert at.button(key="worker_again").label == "Try again"

    monkeypatch.delenv("CIFAR_LAB_RAY")
    assert _open("pages/training.py").error == []  # the problem was about an address the app no longer asks for
    local = launcher.ensure_worker(("--exit-when-idle",))
    try:
        assert b"--ray" not in Path(f"/proc/{local}/cmdline").read_bytes()
    finally:
        os.kill(local, signal.SIGTERM)


def test_a_local_worker_is_replaced_when_the_app_asks_for_a_ray_dispatcher(home, small_data, monkeypatch):
    """Issue 28: a worker of the wrong kind never silently blocks the one the app wants: the live
    local worker on this machine is asked to stop (it exits, handing back any job) and a
    dispatcher is started in its place."""
    from cifar_core.jobs import launcher
    from cifar_core.jobs.worker import list_workers
    from cifar_core.testing.procs import start_worker, wait_for

    local = start_worker(log=home / "local.log")
    try:
        conn = store.connect()
        try:
            wait_for(lambda: [w for w in list_workers(conn) if w.alive and w.pid == local.pid], timeout=60,
                     what="the local worker to register")
        finally:
            conn.close()
        monkeypatch.setenv("CIFAR_LAB_RAY", "127.0.0.1:1")  # a dispatcher is wanted (nothing answers there)
        started = launcher.ensure_worker(("--exit-when-idle",))
        assert started is not None and started != local.pid
        assert local.wait(timeout=60) == 0  # the local worker stopped, as asked
        problem = wait_for(launcher.start_problem, timeout=60, what="the dispatcher to run and say why it stopped")
        assert problem.address == "127.0.0.1:1"  # so the process started in its place was the dispatcher
    finally:
        local.kill()
