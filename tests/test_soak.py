"""scripts/soak.py's verdict (its `check`), on a real store after real jobs: all true after a clean
run, and each check false when what it guards is broken. The soak itself (minutes, a Ray
cluster) is run by hand: README, "On a cluster"."""

from __future__ import annotations

from cifar_core.jobs import queue, store
from cifar_core.lab import Lab
from cifar_core.testing.datagen import tiny_spec
from cifar_core.testing.procs import cli


def test_the_soak_check_passes_a_clean_run_and_names_each_defect(lab_home, small_data, script):
    soak = script("soak")
    ids = list(Lab().submit(tiny_spec(epochs=2), str(small_data), repeats=2).job_ids)
    cli("worker", "--exit-when-idle", "--threads", "1", timeout=600)
    conn = store.connect()
    try:
        seen = soak.EpochLog()
        seen.see(conn, ids)
        assert set(soak.check(conn, ids, 2, seen, lab_home / "runs").values()) == {True}

        # An epoch whose row was written again after the log first saw it: trained twice.
        seen.first[(ids[0], 2)] -= 1.0
        broken = soak.check(conn, ids, 2, seen, lab_home / "runs")
        assert [k for k, ok in broken.items() if not ok] == ["every epoch stored exactly once"]
        assert seen.retrained == {(ids[0], 2)}

        (lab_home / "runs" / str(ids[1]) / "history.json").unlink()
        [queued] = Lab().submit(tiny_spec(epochs=2), str(small_data)).job_ids
        broken = soak.check(conn, [*ids, queued], 2, soak.EpochLog(), lab_home / "runs")
        assert [k for k, ok in broken.items() if not ok] == [
            "every job succeeded", "every epoch stored exactly once", "every run folder's history has each epoch once",
            "no job left queued or running"]
    finally:
        conn.close()


def test_strikes_spare_a_job_one_crash_from_failing(lab_home, small_data, script):
    """A job with 2 attempts in a row that finished no epoch fails at the 3rd: no strike may end its
    attempt (the soak tests that nothing is lost, not that enough kills fail a job)."""
    soak = script("soak")
    ids = list(Lab().submit(tiny_spec(epochs=2), str(small_data), repeats=2).job_ids)
    conn = store.connect()
    try:
        for pid in (101, 102, 103):
            store.register_worker(conn, f"w{pid}", pid, "here", 1)
        for _ in range(2):  # job 1's worker dies twice before its first epoch
            assert queue.expire(conn, queue.claim(conn, "w101").lease, "SIGKILLed")
        assert queue.get_job(conn, ids[0]).crashes == 2
        assert soak.fragile(conn) == {ids[0]}
        # queued, it may be claimed by any idle worker at once: no worker is struck
        assert soak.local_victims(conn, [101, 102, 103]) == []

        assert queue.claim(conn, "w101").id == ids[0]
        assert queue.claim(conn, "w102").id == ids[1]
        assert soak.local_victims(conn, [101, 102, 103]) == [102, 103]

        # On Ray: both train (trainers 201, 202); only job 2's trainer may be killed, and neither
        # the dispatcher nor the node, which would end job 1's attempt too.
        for job_id, trainer in zip(ids, (201, 202)):
            queue.heartbeat(conn, queue.get_job(conn, job_id).lease, 60, 1, 4, node="n", pid=trainer)
        kinds, running = soak.ray_targets(conn, [201, 202], node_up=True)
        assert (kinds, [j.id for j in running]) == (["trainer"], [ids[1]])
        queue.finish(conn, queue.get_job(conn, ids[0]).lease, queue.SUCCEEDED)
        assert soak.ray_targets(conn, [202], node_up=True)[0] == ["dispatcher", "node", "trainer"]
    finally:
        conn.close()
