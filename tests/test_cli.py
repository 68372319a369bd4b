"""`python -m cifar_core` as a user runs it: real processes, a real store, the small generated data."""

from __future__ import annotations

import json

import pytest

from cifar_core.testing.datagen import tiny_spec
from cifar_core.testing.procs import cli


@pytest.fixture()
def spec_file(lab_home, small_data, monkeypatch, tmp_path):
    monkeypatch.setenv("CIFAR_LAB_DATA", str(small_data))
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(tiny_spec(epochs=1, learning_rate=0.001)))
    return path


def test_presets_and_summary():
    listed = cli("presets").stdout
    assert all(name in listed for name in ("exp1", "exp5", "fast", "best"))
    summary = json.loads(cli("summary", "exp4", "--json").stdout)
    assert summary["total_params"] == 122_570


def test_submit_runs_show_and_cancel(spec_file):
    ids = [int(i) for i in cli("submit", str(spec_file), "--repeats", "2").stdout.split()]
    assert len(ids) == 2
    runs = json.loads(cli("runs", "--json").stdout)
    assert [r["run"] for r in runs] == ids[::-1] and {r["status"] for r in runs} == {"queued"}
    shown = json.loads(cli("show", str(ids[0]), "--json").stdout)
    assert shown["run"] == ids[0] and shown["history"] == [] and shown["best_epoch"] is None
    assert cli("cancel", str(ids[1])).stdout.strip() == f"job {ids[1]}: cancelled"
    assert "cancelled" in cli("runs").stdout


def test_errors_are_one_line_and_exit_2(spec_file):
    missing = cli("show", "99", check=False)
    assert missing.returncode == 2 and missing.stderr.strip() == "error: no job 99; `python -m cifar_core runs` lists the jobs"
    bad = spec_file.with_name("bad.json")
    bad.write_text(json.dumps(tiny_spec(epochs=0)))
    refused = cli("submit", str(bad), check=False)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and "epochs" in refused.stderr
    assert cli("runs").stdout.startswith("no runs yet")


def test_a_sweep_prints_its_id_and_jobs(spec_file, tmp_path):
    space = tmp_path / "space.json"
    space.write_text(json.dumps({"method": "grid", "params": {"learning_rate": {"values": [0.01, 0.001]}}}))
    out = cli("sweep", str(spec_file), "--space", str(space)).stdout.strip()
    assert out.startswith("sweep 1: ") and out.split(": ")[1].split() == ["1", "2"]

HUGE = "99999999999999999999999"


@pytest.mark.parametrize("args", [["show", HUGE], ["cancel", HUGE], ["measure", HUGE], ["export", HUGE],
                                  ["report", "--group", HUGE], ["show", "9223372036854775808"], ["show", "0"],
                                  ["show", "--", "-3"], ["show", "9" * 5000]],
                         ids=["show", "cancel", "measure", "export", "report", "2**63", "zero", "negative", "5000-digits"])
def test_an_id_out_of_range_exits_2_with_one_line(lab_home, args):
    proc = cli(*args, timeout=60, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    *usage, error = proc.stderr.strip().splitlines()  # argparse's usage (wrapped), then one error line
    assert usage[0].startswith("usage: python -m cifar_core ") and all(l.startswith(" ") for l in usage[1:]), usage
    assert error.endswith("is not an id; ids run from 1 to 9223372036854775807"), error
    assert len(error) < 200, error  # a 5,000-digit argument is not echoed back whole


def test_an_id_that_is_not_a_number_exits_2(lab_home):
    proc = cli("cancel", "three", timeout=60, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "python -m cifar_core cancel: error: argument job_id: 'three' is not an id; ids are whole numbers such as 3")


def test_the_largest_id_reaches_the_store(lab_home):
    proc = cli("show", "9223372036854775807", timeout=60, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: no job 9223372036854775807; `python -m cifar_core runs` lists the jobs"


@pytest.mark.parametrize("text, message", [("[" * 100_000, "is nested too deeply for Python's JSON parser"),
                                           ('{"epochs": ' + "9" * 5000 + "}", "holds an integer of 5,000 digits")])
def test_a_hostile_spec_file_exits_2_with_one_line(lab_home, tmp_path, text, message):
    path = tmp_path / "spec.json"
    path.write_text(text)
    proc = cli("summary", str(path), timeout=60, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"error: spec file {path} {message}") and proc.stderr.count("\n") == 1, proc.stderr


def test_runs_shows_each_jobs_phase_and_note(spec_file, small_data, tmp_path):
    """`runs` names what a running job does now (its phase) and what a job says (why its last
    attempt ended); a job that is not running has no phase."""
    from jobtools import SLOW, _job, _submit

    from cifar_core.jobs import queue
    from cifar_core.testing.procs import paced, start_worker, wait_for

    [job_id] = _submit(tmp_path, dict(SLOW, epochs=3), small_data)
    [queued] = [int(i) for i in cli("submit", str(spec_file)).stdout.split()]
    worker = start_worker("--max-jobs", "1", "--threads", "1", env=paced("hold=training:2:1"))
    try:
        wait_for(lambda: (j := _job(job_id)).epoch == 1 and j.batch == 1, what="the job held in epoch 2", timeout=180)
        listed = {r["run"]: r for r in json.loads(cli("runs", "--json").stdout)}
        assert listed[job_id]["status"] == queue.RUNNING and listed[job_id]["phase"] == "training"
        assert listed[queued]["phase"] is None and listed[queued]["status_note"] is None
        assert "training" in cli("runs").stdout
        cli("cancel", str(job_id))
        assert worker.wait(timeout=120) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    listed = {r["run"]: r for r in json.loads(cli("runs", "--json").stdout)}
    assert listed[job_id]["status"] == queue.CANCELLED and listed[job_id]["phase"] is None
    assert listed[job_id]["status_note"] == "cancelled after epoch 1"
    assert "cancelled after epoch 1" in cli("runs").stdout
