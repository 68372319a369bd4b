"""The use cases (`cifar_core.lab.Lab`) on a real store and the small generated data: what the pages
and the command line call."""

from __future__ import annotations

import pytest

from cifar_core import config
from cifar_core.errors import NotFound, SpecError, SpecErrors
from cifar_core.jobs import queue
from cifar_core.lab import Lab
from cifar_core.spec import identity
from cifar_core.spec.presets import get_preset
from cifar_core.spec.validate import parse_spec
from cifar_core.testing.datagen import tiny_spec


@pytest.fixture()
def lab(lab_home, small_data, monkeypatch) -> Lab:
    monkeypatch.setenv("CIFAR_LAB_DATA", str(small_data))
    return Lab()


def _finish(conn, job_id: int, val_accuracy: list[float]) -> None:
    """Play a worker: claim the job, store its epochs, finish it."""
    job = queue.claim(conn, "test-worker")
    assert job is not None and job.id == job_id
    for epoch, acc in enumerate(val_accuracy, start=1):
        queue.record_epoch(conn, job.lease, {"epoch": epoch, "loss": 1.0, "accuracy": acc + 0.1, "val_loss": 1.0,
                                          "val_accuracy": acc, "seconds": 1.0, "learning_rate": 0.001})
    assert queue.finish(conn, job.lease, queue.SUCCEEDED, results={"test_accuracy": max(val_accuracy)})


def test_one_submit_is_one_ungrouped_job(lab, conn):
    submitted = lab.submit(tiny_spec(seed=3))
    assert submitted.group_id is None and len(submitted.job_ids) == 1
    job = queue.get_job(conn, submitted.job_ids[0])
    assert job.state == queue.QUEUED and job.spec["seed"] == 3 and job.data_source == config.resolve_source(None)


def test_repeats_are_one_group_with_consecutive_seeds(lab, conn):
    group_id, ids = lab.submit(tiny_spec(seed=3), repeats=3, epochs=1)
    assert group_id is not None and len(ids) == 3
    jobs = [queue.get_job(conn, i) for i in ids]
    assert [j.spec["seed"] for j in jobs] == [3, 4, 5] and {j.group_id for j in jobs} == {group_id}
    assert {j.spec["epochs"] for j in jobs} == {1}  # the override applies to every copy


def test_an_invalid_spec_enqueues_nothing(lab, conn):
    with pytest.raises(SpecError, match="epochs"):
        lab.submit(tiny_spec(epochs=0), repeats=2)
    assert sum(queue.counts(conn).values()) == 0


def test_a_sweep_returns_its_group_and_runs(lab):
    space = {"method": "grid", "params": {"learning_rate": {"values": [0.01, 0.001]}}}
    group_id, ids = lab.submit_sweep(tiny_spec(learning_rate=0.001), space)
    assert len(ids) == 2
    listed = lab.sweeps()
    assert listed["group"].tolist() == [group_id] and listed["runs"].tolist() == [2]
    assert list(lab.sweep(group_id).info.run_ids) == ids


def test_experiments_are_saved_by_name(lab):
    lab.save_experiment(tiny_spec(name="mine"))
    assert lab.experiment_names() == ["mine"]
    assert lab.experiment("mine")["name"] == "mine"
    with pytest.raises(NotFound, match="no saved experiment 'other'; saved ones: mine"):
        lab.experiment("other")


def test_a_run_record_carries_its_best_epoch_and_diagnosis(lab, conn):
    [job_id] = lab.submit(tiny_spec(epochs=3)).job_ids
    _finish(conn, job_id, [0.2, 0.5, 0.4])
    run = lab.run(job_id)
    assert run.best_epoch == 2 and run.best_val_accuracy == pytest.approx(0.5)
    assert run.diagnosis is not None and run.diagnosis.best_epoch == 2
    as_json = run.to_dict()
    assert as_json["best_epoch"] == 2 and as_json["diagnosis"]["title"] == run.diagnosis.title


def test_a_run_without_epochs_has_no_diagnosis(lab):
    [job_id] = lab.submit(tiny_spec()).job_ids
    run = lab.run(job_id)
    assert run.diagnosis is None and run.best_epoch is None and run.to_dict()["diagnosis"] is None


def test_the_leaderboard_names_the_data_and_the_diagnosis(lab, conn):
    first, second = lab.submit(tiny_spec(epochs=2), repeats=2).job_ids
    _finish(conn, first, [0.3, 0.35])
    board = lab.leaderboard()
    assert board["run"].tolist() == [second, first]
    # by its file name, not the path on this machine (was config.resolve_source(None) before issue 14)
    assert board.set_index("run").loc[first, "data_source"] == identity.source_name(config.resolve_source(None))
    assert isinstance(board.set_index("run").loc[first, "diagnosis"], str)
    assert board.set_index("run").loc[second, "diagnosis"] != board.set_index("run").loc[second, "diagnosis"]  # NaN


def test_cancel_and_the_queue_view(lab):
    [job_id] = lab.submit(tiny_spec()).job_ids
    assert lab.queue_counts()[queue.QUEUED] == 1
    assert lab.cancel(job_id) == queue.CANCELLED
    view = lab.queue_view()
    assert not view.active and [p.id for p in view.recent] == [job_id]
    with pytest.raises(NotFound):
        lab.cancel(job_id + 1)


OUT = {"type": "Dense", "units": 10, "activation": "softmax"}


def test_submit_applies_overrides_and_revalidates(lab, conn, small_data):
    doc = get_preset("exp4")
    [job_id] = lab.submit(doc, str(small_data), epochs=2, batch_size=64, seed=7).job_ids
    queued = queue.get_job(conn, job_id).spec
    assert (queued["epochs"], queued["batch_size"], queued["seed"]) == (2, 64, 7)
    assert queued["layers"] == parse_spec(get_preset("exp4")).to_dict()["layers"] and doc["epochs"] == 20
    with pytest.raises(SpecErrors, match=r"epochs=0 is out of range 1\.\.1000") as info:
        lab.submit(doc, str(small_data), epochs=0)
    assert info.value.errors[0].field == "epochs"
    with pytest.raises(SpecErrors, match=r"unknown setting 'epoch': allowed keys are name, layers"):
        lab.submit(doc, str(small_data), epoch=3)
    with pytest.raises(SpecErrors, match=r"layer 0 \(Dense\) gets a 4-D input \(32, 32, 3\)"):
        lab.submit(doc, str(small_data), layers=[OUT])
    assert [j.id for j in queue.list_jobs(conn)] == [job_id]  # nothing invalid was queued


def _finish_flat(conn, job_id: int, val_accuracy: list[float]) -> None:
    """`_finish` with a training loss that falls a little: a run that learned something."""
    job = queue.claim(conn, "test-worker")
    assert job is not None and job.id == job_id
    for epoch, acc in enumerate(val_accuracy, start=1):
        queue.record_epoch(conn, job.lease, {"epoch": epoch, "loss": 2.2 - 0.02 * epoch, "accuracy": acc + 0.02,
                                             "val_loss": 2.2, "val_accuracy": acc, "seconds": 1.0, "learning_rate": 0.001})
    assert queue.finish(conn, job.lease, queue.SUCCEEDED, results={"test_accuracy": max(val_accuracy)})


def test_a_sweep_run_is_diagnosed_against_its_siblings(lab, conn):
    """Issue 14: the lr 0.003 run of a sweep was told to grow the model while its lr 0.0003 sibling
    reached 40%."""
    space = {"method": "grid", "params": {"learning_rate": {"values": [0.003, 0.0003]}}}
    _, (high, low) = lab.submit_sweep(tiny_spec(learning_rate=0.001, epochs=5), space)
    [wider] = lab.submit(tiny_spec(epochs=5, learning_rate=0.0003, layers=[
        {"type": "Flatten"}, {"type": "Dense", "units": 10, "activation": "softmax"}])).job_ids  # another network
    [other_seed] = lab.submit(tiny_spec(epochs=5, learning_rate=0.003, seed=9)).job_ids  # high's configuration
    _finish_flat(conn, high, [0.17, 0.18, 0.19, 0.19, 0.19])
    _finish_flat(conn, low, [0.30, 0.36, 0.39, 0.40, 0.401])
    _finish_flat(conn, wider, [0.50, 0.55, 0.60, 0.61, 0.62])
    _finish_flat(conn, other_seed, [0.18, 0.19, 0.20, 0.20, 0.20])

    from cifar_core.analysis import diagnosis

    assert [s.run for s in diagnosis.siblings_of(conn, high)] == [low]  # not another network, not another seed
    d = lab.run(high).diagnosis
    assert d.verdict == "underfitting" and d.sibling.run == low
    assert d.text.startswith(f"Run #{low} with learning_rate 0.0003 reached 40.1% with the same network (19.0% here):"
                             " this run's learning_rate 0.003 is the likely cause, not capacity.")
    assert "Grow the model" not in d.next_step
    assert [s.run for s in diagnosis.siblings_of(conn, low)] == [high, other_seed]
    assert lab.run(low).diagnosis.sibling is None  # its siblings did worse
    with pytest.raises(NotFound, match="no run 99"):
        diagnosis.siblings_of(conn, 99)
