"""The Ray dispatcher on a real two-node Ray cluster on this machine (no mocks).

The cluster is two `ray start --block` processes (a head and a second node, 1 CPU each, token
authentication on with a token made for the test and given through `RAY_AUTH_TOKEN`, temp dirs
under the test's tmp folder), started once for the module and stopped by pid at the end. The
dispatcher runs as a user runs it: `python -m cifar_core worker --ray ADDRESS`, each job asking
for one CPU (`CIFAR_LAB_JOB_CPUS=1`). The test that stops the second node comes last.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from jobtools import SLOW, _epochs, _job, _submit

from cifar_core.jobs import queue, results, store
from cifar_core.testing.procs import ROOT, cli, paced, wait_for
from cifar_core.testing.raycluster import Cluster, cluster_env

pytestmark = pytest.mark.ray

LEASE = "4"  # seconds: a dead dispatcher's jobs go back to the queue quickly
SLOW = dict(SLOW, epochs=10)  # test_worker's net; tests that act mid-run hold it there with a pace


def test_ray_auto_with_no_cluster_on_this_machine_says_so_and_starts_none(lab_home, small_data, tmp_path,
                                                                          monkeypatch):
    """First in the module, before its cluster starts: `--ray auto` joins only a cluster that runs
    here; with none it starts no Ray, says what to do instead (on the Training page too) and
    loses nothing."""
    from cifar_core.jobs.ray_dispatcher import local_clusters

    if local_clusters():
        pytest.skip("a Ray cluster runs on this machine: --ray auto would join it")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    [job_id] = _submit(tmp_path, dict(SLOW, epochs=1), small_data)
    done = subprocess.run([sys.executable, "-m", "cifar_core", "worker", "--ray", "auto", "--exit-when-idle"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.strip().splitlines()[-1] == (
        "error: --ray auto found no Ray cluster on this machine ($RAY_ADDRESS unset and no `ray start` running "
        "here): start one (`ray start --head`, README \"On a cluster\"), give its address (`--ray HOST:PORT`), "
        "or use `--ray local` for a private Ray on this machine alone")
    assert not local_clusters()  # it started no Ray of its own
    from cifar_core.jobs import launcher

    problem = launcher.start_problem()
    assert problem.address == "auto" and problem.reason.startswith("--ray auto found no Ray cluster")
    assert _job(job_id).state == queue.QUEUED and _job(job_id).attempts == 0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    env = cluster_env()
    with pytest.MonkeyPatch.context() as mp:
        for key in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_USAGE_STATS_ENABLED"):
            mp.setenv(key, env[key])  # the dispatchers the tests start inherit them
        mp.delenv("RAY_ADDRESS", raising=False)
        mp.setenv("CIFAR_LAB_JOB_CPUS", "1")
        c = Cluster(tmp_path_factory.mktemp("ray"), env)
        try:
            wait_for(lambda: c.alive_nodes() == 2, timeout=120, interval=2, what="two Ray nodes")
            yield c
        finally:
            c.stop()


def _dispatcher(tmp_path, address, *args, name="dispatcher", pace: str | None = None) -> subprocess.Popen:
    """A dispatcher as a user starts it; with `pace`, its tasks publish and hold where the test
    says (cifar_core/jobs/pace.py, shipped to the nodes with the code)."""
    out = open(tmp_path / f"{name}.log", "ab")
    return subprocess.Popen([sys.executable, "-m", "cifar_core", "worker", "--ray", address, "--lease", LEASE, *args],
                            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=paced(pace) if pace else None)


def _metric_rows(job_id: int) -> list[int]:
    conn = store.connect()
    try:
        return [r[0] for r in conn.execute("SELECT epoch FROM metrics WHERE run_id = ? ORDER BY epoch", (job_id,))]
    finally:
        conn.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead too
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] != "Z"
    except OSError:
        return False


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def _finish(proc: subprocess.Popen, timeout: float = 300) -> int:
    try:
        return proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_jobs_run_across_both_nodes_with_live_curves(lab_home, small_data, tmp_path, cluster):
    ids = _submit(tmp_path, dict(SLOW, epochs=8), small_data, "--repeats", "3")
    release = tmp_path / "release"
    release.mkdir()
    disp = _dispatcher(tmp_path, cluster.address, "--exit-when-idle", pace=f"hold=training:3:1,release={release}")
    try:
        # A curve grows while its job runs, epoch by epoch, on one node or the other (held in epoch 3
        # until the test has seen it).
        first = ids[0]
        wait_for(lambda: len(_epochs(first)) >= 1, what="a first epoch", timeout=180)
        grown = wait_for(lambda: (e := _epochs(first)) and len(e) >= 2 and _job(first).state == queue.RUNNING and e,
                         what="the curve to grow while running", timeout=120)
        assert grown == [1, 2]
        # Both nodes train at once: the Training page's cluster view has a job on each node.
        from cifar_core.lab import Lab

        view = wait_for(lambda: (v := Lab().cluster()) and sum(len(n.jobs) == 1 for n in v.nodes) == 2 and v,
                        what="a job training on each node at once", timeout=180, interval=0.5)
        assert [n.alive for n in view.nodes] == [True, True] and view.job_cpus == 1
        assert all(n.cpus == 1 for n in view.nodes)
        (release / "training-3-1").touch()
        assert _finish(disp) == 0
    finally:
        _kill(disp)
    jobs = [_job(i) for i in ids]
    assert all(j.state == queue.SUCCEEDED for j in jobs), [j.error for j in jobs]
    assert all(_metric_rows(i) == list(range(1, 9)) for i in ids)
    assert len({j.node for j in jobs}) == 2  # the three ran across both nodes
    # The tasks' phases and running figures reach the store through the dispatcher's heartbeat.
    assert all(j.phase is not None and j.phase.name in ("scoring", "saving", "measuring") for j in jobs), [j.phase for j in jobs]
    conn = store.connect()
    try:
        points = conn.execute("SELECT epoch_float FROM batch_points WHERE job_id = ?", (ids[0],)).fetchall()
    finally:
        conn.close()
    assert points and all(0 < p[0] <= 8 for p in points)
    listed = {r["run"]: r for r in json.loads(cli("runs", "--json").stdout)}
    shown = json.loads(cli("show", str(ids[0]), "--json").stdout)
    assert shown["node"] == jobs[0].node and shown["worker_pid"] == jobs[0].worker_pid > 0
    assert all(listed[i]["node"] == _job(i).node and listed[i]["worker_pid"] == _job(i).worker_pid for i in ids)
    run_dir = lab_home / "runs" / str(ids[0])
    assert {"model.keras", "history.json", "predictions.npz", "spec.json"} <= {p.name for p in run_dir.iterdir()}
    assert not (run_dir / "backup").exists()
    assert [h["epoch"] for h in json.loads((run_dir / "history.json").read_text())] == list(range(1, 9))
    conn = store.connect()
    cost = conn.execute("SELECT model_bytes, latency_p50_ms, throughput_ips FROM runs WHERE id = ?", (ids[0],)).fetchone()
    conn.close()
    assert cost["model_bytes"] == (run_dir / "model.keras").stat().st_size and cost["latency_p50_ms"] > 0
    from cifar_core.lab import Lab

    assert Lab().cluster() is None  # the dispatcher forgot the cluster when it stopped


def test_jobs_reuse_warm_trainers_one_per_node_slot(lab_home, small_data, tmp_path, cluster):
    """Four one-epoch jobs on two 1-CPU nodes train in two warm processes (TensorFlow loaded once
    each), not in four fresh ones; the dispatcher reports the start-up of each in its log."""
    ids = _submit(tmp_path, dict(SLOW, epochs=1), small_data, "--repeats", "4")
    disp = _dispatcher(tmp_path, cluster.address, "--exit-when-idle")
    assert _finish(disp) == 0
    jobs = [_job(i) for i in ids]
    assert all(j.state == queue.SUCCEEDED for j in jobs), [j.error for j in jobs]
    pids = [j.worker_pid for j in jobs]
    assert len(set(pids)) <= 2 and all(pids), pids  # four jobs, at most one process per node slot
    # Each task measured its own process through the relay; the dispatcher stored it with the epoch
    # by the protocol a local worker uses (attempt.record_epoch), naming the Ray node.
    conn = store.connect()
    for j in jobs:
        [epoch] = results.system_history(conn, j.id).to_dict(orient="records")
        assert epoch["node"] == j.node and epoch["node"].startswith(socket.gethostname() + "/")
        assert epoch["cpu_pct"] > 0 and epoch["peak_rss_mb"] > 50 and epoch["cores"] == os.cpu_count(), epoch
    conn.close()


def _memory(pid: int) -> dict:
    """What the process holds now and at most (MB, from /proc), and whether TensorFlow is mapped
    into it. A library once loaded stays mapped, so `tensorflow` absent at the end means never loaded."""
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {"rss_mb": int(status["VmRSS"].split()[0]) / 1024, "peak_mb": int(status["VmHWM"].split()[0]) / 1024,
            "tensorflow": "tensorflow" in Path(f"/proc/{pid}/maps").read_text()}


def test_the_dispatcher_never_loads_tensorflow_and_stays_small(lab_home, small_data, tmp_path, cluster):
    """The dispatcher loads the data (to ray.put it), moves checkpoints and has the finished
    model measured by a child process: TensorFlow stays out of it, before and after a job."""
    disp = _dispatcher(tmp_path, cluster.address)
    try:
        from cifar_core.lab import Lab

        wait_for(lambda: Lab().cluster(), what="the dispatcher on the cluster", timeout=120)
        before = _memory(disp.pid)
        [job_id] = _submit(tmp_path, dict(SLOW, epochs=2), small_data)
        wait_for(lambda: _job(job_id).state not in (queue.QUEUED, queue.RUNNING), what="the job to end", timeout=300)
        job = _job(job_id)
        assert job.state == queue.SUCCEEDED, job.error
        conn = store.connect()
        cost = conn.execute("SELECT latency_p50_ms, macs FROM runs WHERE id = ?", (job_id,)).fetchone()
        conn.close()
        assert cost["latency_p50_ms"] > 0 and cost["macs"] > 0  # measured, in the dispatcher's child
        after = _memory(disp.pid)
        assert disp.poll() is None
    finally:
        _kill(disp)
    print(f"dispatcher before its first job: {before['rss_mb']:.0f} MB; idle after a job: {after['rss_mb']:.0f} MB "
          f"(peak {after['peak_mb']:.0f} MB); TensorFlow mapped: {after['tensorflow']}")
    assert not before["tensorflow"] and not after["tensorflow"]
    assert before["rss_mb"] < 300 and after["rss_mb"] < 300


def _cluster_doc() -> dict | None:
    conn = store.connect()
    try:
        return store.cluster_doc(conn)
    finally:
        conn.close()


def test_a_claimed_job_whose_task_no_node_can_start_shows_waiting_for_a_node(lab_home, small_data, tmp_path, cluster,
                                                                                monkeypatch):
    """Two CPUs free in all but one on each node: a job asking for two is claimed (the free total
    holds it) and Ray keeps its task waiting. The store and the Training page say so; a cancel
    ends it."""
    from cifar_core.lab import Lab
    from cifar_core.train.phases import WAITING

    monkeypatch.setenv("CIFAR_LAB_JOB_CPUS", "2")
    [job_id] = _submit(tmp_path, dict(SLOW, epochs=1), small_data)
    disp = _dispatcher(tmp_path, cluster.address, "--exit-when-idle")
    try:
        job = wait_for(lambda: (j := _job(job_id)).phase is not None and j, what="the job's phase", timeout=120)
        assert job.state == queue.RUNNING and job.phase.name == WAITING and job.node is None
        [shown] = [p for p in Lab().queue_view().active if p.id == job_id]
        assert shown.label == "waiting for a node · epoch 1/1"
        [listed] = [r for r in json.loads(cli("runs", "--json").stdout) if r["run"] == job_id]
        assert listed["status"] == queue.RUNNING and listed["node"] is None  # no node has it
        assert listed["phase"] == WAITING == "waiting for a node"
        cli("cancel", str(job_id))
        assert _finish(disp, 60) == 0
    finally:
        _kill(disp)
    assert _job(job_id).state == queue.CANCELLED


OCCUPY = """
import sys, ray
ray.init(address=sys.argv[1], logging_level="ERROR")
busy = ray.remote(num_cpus=1)(type("Busy", (), {"ping": lambda self: True})).remote()
ray.get(busy.ping.remote())
print("holding", flush=True)
sys.stdin.read()  # until the test closes it
"""


def test_other_work_on_the_cluster_keeps_its_share(lab_home, small_data, tmp_path, cluster):
    """An actor of another driver holds one of the two CPUs: the dispatcher keeps one job in
    flight, never two, and trains the second once the first one's task has ended."""
    other = subprocess.Popen([sys.executable, "-c", OCCUPY, cluster.address], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        assert other.stdout.readline().strip() == "holding"
        ids = _submit(tmp_path, dict(SLOW, epochs=1), small_data, "--repeats", "2")
        release = tmp_path / "release"
        release.mkdir()
        disp = _dispatcher(tmp_path, cluster.address, "--exit-when-idle", pace=f"hold=training:1:1,release={release}")
        try:
            held = wait_for(lambda: [i for i in ids if (j := _job(i)).state == queue.RUNNING and j.batch == 1],
                            what="a job held in its first batch", timeout=180)
            # Two records of the cluster after that (ROOM_SECONDS apart at least): the dispatcher
            # has read the free resources again meanwhile, and claimed nothing more.
            records = set()

            def three_records() -> bool:
                if (d := _cluster_doc()) is not None:
                    records.add(d["updated_at"])
                return len(records) >= 3

            wait_for(three_records, what="three records of the cluster", timeout=60)
            doc = _cluster_doc()
            assert doc["free_cpus"] == 0
            assert [_job(i).state for i in ids if i not in held] == [queue.QUEUED]
            released = time.time()
            (release / "training-1-1").touch()
            assert _finish(disp, 300) == 0
        finally:
            _kill(disp)
    finally:
        other.stdin.close()
        other.wait(timeout=60)
    first, second = sorted((_job(i) for i in ids), key=lambda j: j.started_at)
    assert first.state == second.state == queue.SUCCEEDED, (first.error, second.error)
    # Claimed once the first one's task had given its CPU back (its closing, on this machine, may
    # still run: it holds no CPU of the cluster).
    assert second.started_at > released
    print(f"with one CPU of two held by other work: job {first.id} ran, job {second.id} waited in the queue "
          f"{second.started_at - first.started_at:.0f} s, claimed {second.started_at - released:.1f} s after the "
          f"first was released")


def test_the_readme_token_file_recipe(lab_home, small_data, tmp_path, tmp_path_factory, monkeypatch):
    """README, "On a cluster": the head started with RAY_AUTH_MODE=token and a token file made by
    `ray get-auth-token --generate` (chmod 600), and a dispatcher given that file through
    RAY_AUTH_TOKEN_PATH, trains a job; the file stays its owner's alone."""
    home = tmp_path / "head-home"
    home.mkdir()
    env = {k: v for k, v in cluster_env().items() if k != "RAY_AUTH_TOKEN"}
    env["HOME"] = str(home)
    ray_bin = str(Path(sys.executable).parent / "ray")
    subprocess.run([ray_bin, "get-auth-token", "--generate"], env=env, check=True, capture_output=True, timeout=60)
    token = home / ".ray" / "auth_token"
    token.chmod(0o600)
    c = Cluster(tmp_path_factory.mktemp("rayt"), env, nodes=1)  # a short path: Ray's sockets live under it
    try:
        wait_for(lambda: c.head.poll() is not None or c.alive_nodes() == 1, timeout=120, interval=1, what="the head")
        assert c.head.poll() is None, (c.base / "head.log").read_text()[-2000:]
        for key in ("RAY_AUTH_TOKEN", "RAY_ADDRESS"):
            monkeypatch.delenv(key, raising=False)
        monkeypatch.setenv("RAY_AUTH_MODE", "token")
        monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(token))
        (tmp_path / "dashboard-home").mkdir()
        monkeypatch.setenv("HOME", str(tmp_path / "dashboard-home"))  # no token there: the path is what joins
        monkeypatch.setenv("CIFAR_LAB_JOB_CPUS", "1")
        [job_id] = _submit(tmp_path, dict(SLOW, epochs=1), small_data)
        disp = _dispatcher(tmp_path, c.address, "--exit-when-idle", name="token-file")
        assert _finish(disp, 300) == 0, (tmp_path / "token-file.log").read_text()[-2000:]
    finally:
        c.stop()
    job = _job(job_id)
    assert job.state == queue.SUCCEEDED, job.error
    assert oct(token.stat().st_mode & 0o777) == oct(0o600)


def test_cancel_stops_the_task_within_seconds_and_keeps_the_epochs(lab_home, small_data, tmp_path, cluster):
    [job_id] = _submit(tmp_path, dict(SLOW, epochs=40), small_data)
    disp = _dispatcher(tmp_path, cluster.address, "--exit-when-idle", pace="hold=training:3:1")
    try:
        wait_for(lambda: len(_epochs(job_id)) >= 2, what="two finished epochs", timeout=180)
        pid = _job(job_id).worker_pid
        assert "stop requested" in cli("cancel", str(job_id)).stdout
        asked = time.monotonic()  # the cancel is in the store (the CLI's own start-up is not the dispatcher's)
        wait_for(lambda: _job(job_id).state == queue.CANCELLED, timeout=30, interval=0.1, what="the cancel")
        took = time.monotonic() - asked
        assert took < 5  # the task has returned (or was killed) by then
        print(f"cancel took {took:.1f} s")
        assert _finish(disp, 120) == 0
    finally:
        _kill(disp)
    assert _metric_rows(job_id) == [1, 2] and _job(job_id).error == "cancelled after epoch 2"
    assert (lab_home / "runs" / str(job_id) / "backup" / "checkpoint.json").exists()  # a retry resumes from it
    wait_for(lambda: not _alive(pid), timeout=10, what="the task's process to end")


def test_killed_dispatcher_leaves_no_task_and_the_next_one_recovers_the_job(lab_home, small_data, tmp_path, cluster):
    [job_id] = _submit(tmp_path, dict(SLOW, epochs=8), small_data)
    first = _dispatcher(tmp_path, cluster.address, name="first", pace="hold=training:3:1")
    try:
        wait_for(lambda: len(_epochs(job_id)) >= 2, what="two finished epochs", timeout=180)
        pid = _job(job_id).worker_pid
        assert _alive(pid)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        _kill(first)
    killed = time.monotonic()
    wait_for(lambda: not _alive(pid), timeout=30, interval=0.2, what="the orphaned task to stop")
    orphan_seconds = time.monotonic() - killed
    assert _job(job_id).state == queue.RUNNING  # until its lease lapses

    second = _dispatcher(tmp_path, cluster.address, "--exit-when-idle", name="second")
    assert _finish(second) == 0
    job = _job(job_id)
    assert job.state == queue.SUCCEEDED, job.error
    assert job.attempts == 2 and job.worker_pid != pid
    assert _metric_rows(job_id) == list(range(1, 9))  # every epoch once
    print(f"orphaned task gone {orphan_seconds:.1f} s after the dispatcher's SIGKILL")


def test_sigterm_hands_the_job_back_and_the_dispatcher_leaves_nothing_registered(lab_home, small_data, tmp_path,
                                                                                cluster):
    [job_id] = _submit(tmp_path, dict(SLOW, epochs=8), small_data)
    disp = _dispatcher(tmp_path, cluster.address, pace="hold=training:3:1")
    try:
        wait_for(lambda: len(_epochs(job_id)) >= 2, what="two finished epochs", timeout=180)
        pid = _job(job_id).worker_pid
        disp.send_signal(signal.SIGTERM)
        assert _finish(disp, 60) == 0
    finally:
        _kill(disp)
    job = _job(job_id)
    assert job.state == queue.QUEUED and job.crashes == 0, job.error  # handing back is not a crash
    assert job.error == "dispatcher shut down; resumes from its last finished epoch"
    assert _metric_rows(job_id) == [1, 2]
    conn = store.connect()
    try:
        assert not store.worker_rows(conn) or not any(r["pid"] == disp.pid for r in store.worker_rows(conn))
    finally:
        conn.close()
    from cifar_core.lab import Lab

    assert Lab().cluster() is None
    wait_for(lambda: not _alive(pid), timeout=10, what="the task's process to end")


def test_ray_auto_joins_the_cluster_this_machine_runs(lab_home, small_data, tmp_path, cluster):
    """With no address given ($RAY_ADDRESS unset), `--ray auto` finds the cluster a `ray start`
    on this machine runs, says which, and trains there."""
    from cifar_core.jobs.ray_dispatcher import local_clusters

    assert "RAY_ADDRESS" not in os.environ and local_clusters() == [cluster.address]
    [job_id] = _submit(tmp_path, dict(SLOW, epochs=1), small_data)
    disp = _dispatcher(tmp_path, "auto", "--exit-when-idle", name="auto")
    assert _finish(disp, 300) == 0
    log = (tmp_path / "auto.log").read_text()
    assert f"--ray auto: joining the Ray cluster at {cluster.address} (the one a `ray start` on this machine runs)" in log
    job = _job(job_id)
    assert job.state == queue.SUCCEEDED, job.error
    assert any(i.startswith(job.node.split("/")[1]) for i in cluster.node_ids()), (job.node, cluster.node_ids())


def test_ray_local_starts_a_private_ray_with_its_own_token_beside_a_running_cluster(lab_home, small_data, tmp_path,
                                                                                   cluster, monkeypatch):
    """`--ray local` never joins the cluster running on this machine, and with no token anywhere
    Ray looks for one it makes its own (in its environment, no file) instead of failing."""
    home = tmp_path / "user-home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))  # no ~/.ray/auth_token
    monkeypatch.delenv("RAY_AUTH_TOKEN")
    monkeypatch.delenv("RAY_AUTH_MODE")
    [job_id] = _submit(tmp_path, dict(SLOW, epochs=1), small_data)
    disp = _dispatcher(tmp_path, "local", "--exit-when-idle", name="local")
    assert _finish(disp, 300) == 0, (tmp_path / "local.log").read_text()[-2000:]
    job = _job(job_id)
    assert job.state == queue.SUCCEEDED, job.error
    ids = cluster.node_ids()
    assert len(ids) == 2 and not any(i.startswith(job.node.split("/")[1]) for i in ids), (job.node, ids)
    assert not (home / ".ray" / "auth_token").exists()


def test_a_ray_task_that_dies_before_an_epoch_counts_a_crash_as_a_local_one_does(lab_home, small_data, tmp_path,
                                                                              cluster):
    """Ray restarts nothing by itself: a task that dies ends its attempt, and three attempts in a
    row without a finished epoch fail the job with the local worker's words."""
    [job_id] = _submit(tmp_path, dict(SLOW, epochs=3), small_data)
    disp = _dispatcher(tmp_path, cluster.address, "--exit-when-idle", pace="hold=training:1:1")  # held, never ends
    try:
        for crash in range(1, queue.MAX_ATTEMPTS + 1):
            held = wait_for(lambda: (j := _job(job_id)).attempts == crash and j.worker_pid and j.batch and j,
                            timeout=180, interval=0.2, what=f"attempt {crash} training")
            os.kill(held.worker_pid, signal.SIGKILL)
        assert _finish(disp, 120) == 0
    finally:
        _kill(disp)
    job = _job(job_id)
    assert job.state == queue.FAILED and job.attempts == job.crashes == queue.MAX_ATTEMPTS, job.error
    assert job.error.startswith("gave up after 3 attempts in a row that finished no epoch: its Ray task on ")
    assert "retry" in cli("retry", str(job_id)).stdout or _job(job_id).state == queue.QUEUED  # retried as a local one


def test_a_searching_sweep_on_the_cluster_prunes_the_trial_that_cannot_learn(lab_home, small_data, cluster):
    """A grid sweep with the median pruner through Ray dispatchers: the learner completes (alone,
    by a dispatcher that takes one job, so the pruner has a completed trial to judge by); then the
    trial whose rate never learns is pruned where its epoch is stored, stops within an epoch, says
    why, keeps its curve and checkpoint, and is never retried (nor failed)."""
    from cifar_core.lab import Lab
    from cifar_core.search.config import PrunerConfig, SearchConfig
    from cifar_core.testing.datagen import tiny_spec

    space = {"method": "grid", "params": {"learning_rate": {"values": [0.003, 1e-07]}}}
    pruner = PrunerConfig(kind="median", startup_trials=1, min_epochs=1)
    search = SearchConfig(sampler="grid", pruner=pruner, seed=1, max_trials=2)  # seed 1: the learner first
    lab = Lab()
    group, ids = lab.submit_sweep(tiny_spec(epochs=4, name="srch", learning_rate=0.003), space, str(small_data), search)
    first, second = (_job(i) for i in ids)
    assert (first.spec["learning_rate"], second.spec["learning_rate"]) == (0.003, 1e-07), "Optuna's grid order moved"
    assert _finish(_dispatcher(lab_home, cluster.address, "--max-jobs", "1", name="learner"), 300) == 0
    assert _job(first.id).state == queue.SUCCEEDED and _job(second.id).state == queue.QUEUED
    assert _finish(_dispatcher(lab_home, cluster.address, "--exit-when-idle", name="loser"), 300) == 0
    first, second = _job(first.id), _job(second.id)
    assert first.state == queue.SUCCEEDED and first.epoch == 4, first.error
    assert second.state == queue.PRUNED and 1 <= second.epoch < 4, (second.state, second.error)
    assert second.error.startswith(f"pruned after epoch {second.epoch}: ") and "median" in second.error, second.error
    assert second.attempts == 1 and second.crashes == 0  # stopped once, never claimed again
    assert _metric_rows(second.id) == list(range(1, second.epoch + 1))  # its curve, each epoch once
    assert (lab_home / "runs" / str(second.id) / "backup" / "checkpoint.json").exists()  # and its checkpoint
    refused = cli("retry", str(second.id), check=False)
    assert refused.returncode == 2 and "only a failed or cancelled job can be retried" in refused.stderr
    [listed] = [r for r in json.loads(cli("runs", "--json").stdout) if r["run"] == second.id]
    assert listed["status"] == queue.PRUNED and listed["status_note"] == second.error and listed["phase"] is None
    replayed = lab.replay_sweep(group, pruner).runs[0]
    assert replayed.stopped == {second.id: ("prune", second.epoch)} and replayed.best_survived


def test_killed_ray_worker_and_lost_node_cost_no_epoch(lab_home, small_data, tmp_path, cluster):
    """Last in the module: it stops the second node. The pace holds both jobs at the start of
    epochs 3 and 9 until the test releases them, so every kill lands mid-run on any machine."""
    epochs = 24
    ids = _submit(tmp_path, dict(SLOW, epochs=epochs), small_data, "--repeats", "2")
    release = tmp_path / "release"
    release.mkdir()
    disp = _dispatcher(tmp_path, cluster.address, "--exit-when-idle",
                       pace=f"hold=training:3:1,hold=training:9:1,release={release}")
    try:
        # SIGKILL the Ray worker process training the job on the second node: its attempt ends as
        # a local one would (not a crash: it had finished epochs), the job is claimed again and
        # resumes from its last checkpoint. The head's one CPU is busy with the other job, so the
        # new attempt lands on the second node again.
        head = _head_label(cluster)
        held = lambda i, attempt=1: (j := _job(i)).attempts == attempt and j.epoch == 2 and j.batch == 1  # noqa: E731
        wait_for(lambda: all(held(i) for i in ids), what="both jobs held in epoch 3", timeout=180)
        [victim] = [i for i in ids if _job(i).node != head]
        pid = _job(victim).worker_pid
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: held(victim, attempt=2) and _job(victim).worker_pid != pid, timeout=180,
                 what="the job held again in a new attempt")
        assert _job(victim).crashes == 0  # it had finished epochs: not a crash
        (release / "training-3-1").touch()

        # Stop the second node while its job is held in epoch 9, with epochs to go.
        wait_for(lambda: all(_job(i).epoch == 8 and _job(i).batch == 1 for i in ids), timeout=300,
                 what="both jobs held in epoch 9")
        lost = _job(victim).node
        assert lost != head
        cluster.stop_node()  # SIGKILL: the node is gone when it returns
        (release / "training-9-1").touch()
        assert _finish(disp, 600) == 0
    finally:
        _kill(disp)
    for i in ids:
        job = _job(i)
        assert job.state == queue.SUCCEEDED, job.error
        assert _metric_rows(i) == list(range(1, epochs + 1))  # every epoch once, none lost
        history = json.loads((lab_home / "runs" / str(i) / "history.json").read_text())
        assert [h["epoch"] for h in history] == list(range(1, epochs + 1))
    assert _job(victim).node == head  # its last epochs trained on the node that was left


def _head_label(cluster: Cluster) -> str:
    """The head node's label, as jobs record it (from the cluster view the dispatcher records)."""
    from cifar_core.lab import Lab

    view = wait_for(lambda: Lab().cluster(), what="the cluster view", timeout=30)
    return next(n.node for n in view.nodes if n.head)
