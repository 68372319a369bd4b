"""scripts/soak.py's verdict (its `check`), on a real store after real jobs: all true after a clean
run, and each check false when what it guards is broken. The soak itself (minutes, a Ray
cluster) is run by hand: README, "On a cluster"."""

from __future__ import annotations

from cifar_core.jobs import store
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
