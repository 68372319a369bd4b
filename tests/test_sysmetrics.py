"""System metrics per run (train/sysmetrics.py): what the training process used of its machine,
measured by the process itself, stored with each epoch by a real worker, shown by the CLI, the
Run page and the Leaderboard; a run from before they were recorded says "not recorded", never 0."""

from __future__ import annotations

import json
import os
import socket

import pytest
from pagetools import _finished_run, open_page, rerun, texts

from cifar_core.jobs import results, store
from cifar_core.testing.datagen import tiny_spec
from cifar_core.testing.procs import cli, run_until_idle
from cifar_core.train import sysmetrics


def test_the_process_reads_its_own_cpu_time_peak_memory_and_machine():
    before = sysmetrics.cpu_seconds()
    sum(i * i for i in range(3_000_000))  # CPU work: its time must show
    assert sysmetrics.cpu_seconds() > before
    assert sysmetrics.peak_rss_bytes() > 10e6
    m = sysmetrics.machine()
    assert m.cores == os.cpu_count() and m.cpu_model and m.cpu_model == sysmetrics.cpu_model()


def test_peak_rss_starts_again_after_a_reset(tmp_path):
    """A warm Ray trainer reports each job's own peak: the reset brings it back to what is held now."""
    held = bytearray(200_000_000)  # touched: resident
    held[::4096] = b"x" * len(held[::4096])
    high = sysmetrics.peak_rss_bytes()
    del held
    if not sysmetrics.reset_peak_rss():
        pytest.skip("this kernel cannot reset the peak RSS (/proc/self/clear_refs)")
    assert sysmetrics.peak_rss_bytes() < high - 150e6


def test_cpu_model_from_an_arm_cpuinfo_and_from_none(tmp_path):
    arm = tmp_path / "cpuinfo"
    arm.write_text("processor\t: 0\nBogoMIPS\t: 48.00\n\nHardware\t: BCM2835\nModel\t: Raspberry Pi 4 Model B Rev 1.4\n")
    assert sysmetrics.cpu_model(arm) == "Raspberry Pi 4 Model B Rev 1.4"
    assert sysmetrics.cpu_model(tmp_path / "missing")  # platform's answer instead


@pytest.fixture(scope="module")
def trained(tmp_path_factory, small_data):
    """A lab home with run 1 trained for 2 epochs by a real worker, and run 2 stored as a run from
    before the lab recorded system metrics (epochs without them)."""
    home = tmp_path_factory.mktemp("sysm") / "home"
    home.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CIFAR_LAB_HOME", str(home))
        mp.setenv("CIFAR_LAB_DATA", str(small_data))
        [run], _ = run_until_idle([tiny_spec(epochs=2)], str(small_data), "--threads", "1", quiet=True)
        conn = store.connect()
        old = _finished_run(conn, name="old", epochs=2)  # records without the system figures
        conn.close()
        yield home, run, old


@pytest.fixture()
def home(trained, monkeypatch):
    monkeypatch.setenv("CIFAR_LAB_HOME", str(trained[0]))
    return trained[0]


def test_a_real_worker_records_each_epoch_with_its_process_and_machine(trained, home):
    _, run, old = trained
    conn = store.connect()
    epochs = results.system_history(conn, run).to_dict(orient="records")
    summary = results.run_detail(conn, run).system_summary
    conn.close()
    assert [e["epoch"] for e in epochs] == [1, 2]
    for e in epochs:
        assert e["node"] == socket.gethostname() and e["cores"] == os.cpu_count()
        assert e["cpu_model"] == sysmetrics.cpu_model()
        assert e["peak_rss_mb"] > 50  # TensorFlow and the data alone hold more
        assert e["cpu_seconds"] > 0 and 0 < e["cpu_pct"] and e["machine_cpu_pct"] == pytest.approx(e["cpu_pct"] / e["cores"])
    assert summary["recorded_epochs"] == 2 and summary["nodes"] == socket.gethostname()
    assert summary["peak_rss_mb"] == max(e["peak_rss_mb"] for e in epochs)
    wall = sum(e["seconds"] for e in epochs)
    assert summary["cpu_pct"] == pytest.approx(100 * sum(e["cpu_seconds"] for e in epochs) / wall)


def test_runs_json_show_json_and_show_say_it_and_an_old_run_says_not_recorded(trained, home):
    _, run, old = trained
    listed = {r["run"]: r for r in json.loads(cli("runs", "--json").stdout)}
    assert listed[run]["peak_rss_mb"] > 50 and listed[run]["cpu_pct"] > 0 and listed[run]["cores"] == os.cpu_count()
    assert listed[run]["cpu_model"] == sysmetrics.cpu_model()
    assert all(listed[old][c] is None for c in results.SYSTEM_COLUMNS)  # null, never 0
    shown = json.loads(cli("show", str(run), "--json").stdout)["system"]
    assert shown["recorded_epochs"] == 2 and len(shown["epochs"]) == 2 and shown["epochs"][0]["peak_rss_mb"] > 50
    shown_old = json.loads(cli("show", str(old), "--json").stdout)["system"]
    assert shown_old["recorded_epochs"] == 0 and shown_old["cpu_pct"] is None and shown_old["peak_rss_mb"] is None
    assert [e["cpu_seconds"] for e in shown_old["epochs"]] == [None, None]
    assert f"on {socket.gethostname()} ({sysmetrics.cpu_model()}), over 2 epochs" in cli("show", str(run)).stdout
    assert "System metrics: not recorded" in cli("show", str(old)).stdout


def test_run_page_shows_the_summary_line_and_epochs_and_not_recorded_for_an_old_run(trained, home, small_data,
                                                                                   monkeypatch):
    _, run, old = trained
    monkeypatch.setenv("CIFAR_LAB_DATA", str(small_data))
    at = open_page("pages/run.py", run=str(run))
    shown = texts(at.markdown)
    assert f"on {socket.gethostname()} ({sysmetrics.cpu_model()}), over 2 epochs" in shown
    assert "% of one core" in shown and "peak RSS" in shown
    [system] = _tables_with(at, "peak_rss_mb")
    assert list(system["epoch"]) == [1, 2] and (system["peak_rss_mb"] > 50).all()
    at = open_page("pages/run.py", run=str(old))
    assert "System metrics: not recorded" in texts(at.markdown)
    assert not _tables_with(at, "peak_rss_mb")  # no table of zeros or blanks


def test_leaderboard_shows_the_system_columns_when_asked(trained, home, small_data, monkeypatch):
    _, run, old = trained
    monkeypatch.setenv("CIFAR_LAB_DATA", str(small_data))
    at = open_page("pages/leaderboard.py")
    assert "peak_rss_mb" not in at.dataframe[0].proto.column_order  # optional: off by default
    at = rerun(at.toggle(key="lb_system").set_value(True))
    table = at.dataframe[0]
    assert {"cpu_pct", "peak_rss_mb", "cpu_model"} <= set(table.proto.column_order)
    rows = table.value.set_index("run")
    assert rows.loc[run, "peak_rss_mb"] > 50 and rows.loc[run, "cpu_model"] == sysmetrics.cpu_model()
    assert rows[list(results.SYSTEM_COLUMNS)].loc[old].isna().all()  # shown "–", never 0


def _tables_with(at, column: str) -> list:
    return [d.value for d in at.dataframe if column in d.value.columns]
