"""The training function on its own (no store, no worker): reporting, stopping, resuming."""

from __future__ import annotations

import json

import pytest

from cifar_core.testing.datagen import tiny_spec
from cifar_core.train.latency import measure_cost
from cifar_core.errors import LabError
from cifar_core.train import loop as training
from cifar_core.train import phases
from recorder import Recorder

from cifar_core.train.atomic import write_json
from cifar_core.train.checkpoint import read_checkpoint
from cifar_core.data.sources import load_dataset
from cifar_core.spec.validate import parse_spec

TINY = tiny_spec(epochs=4)


@pytest.fixture()
def ds(lab_home, small_data):
    return load_dataset(str(small_data))


def test_reports_every_epoch_and_scores_the_test_set_once(ds, tmp_path):
    rec = Recorder()
    outcome = training.train(parse_spec(TINY), ds, tmp_path / "run", rec)
    assert outcome.status == training.COMPLETED
    assert [r["epoch"] for r in rec.epochs] == [1, 2, 3, 4] == [h["epoch"] for h in outcome.history]
    assert rec.progress_calls >= 4 * 12  # 360 holdout-train images / 32 per batch, every batch
    assert 0 <= outcome.test_accuracy <= 1 and outcome.test_loss > 0
    assert not hasattr(outcome, "cost")  # training measures nothing about serving; the caller does
    cost = measure_cost(outcome.files["model"], ds.input_shape)
    assert cost["latency_p50_ms"] > 0 and cost["model_bytes"] > 0
    assert (tmp_path / "run" / "backup").exists()  # the consumer drops it once the store says succeeded


def test_reports_each_phase_and_the_running_figures_of_each_batch(ds, tmp_path):
    rec = Recorder()
    spec = parse_spec(tiny_spec(epochs=1, tta_flip=True, tta_shift=1))  # 5 shifts, each also mirrored
    outcome = training.train(spec, ds, tmp_path / "run", rec)
    assert outcome.status == training.COMPLETED
    val_batches = 1  # 40 held-out images in batches of 256
    assert rec.phases == [
        (phases.TRAINING, 0, 0),
        (phases.VALIDATING, 0, val_batches), (phases.VALIDATING, 1, val_batches),
        (phases.TRAINING, 0, 0),  # the epoch ended
        (phases.SCORING, 0, 10), (phases.SAVING, 0, 0),
    ]
    [record] = rec.epochs
    assert 0 < record["val_seconds"] < record["seconds"]
    # Keras's running means: after the last batch they are the epoch's own figures.
    assert [b for _, b, _, _ in rec.running] == list(range(1, 13))  # 360 images, 32 a batch
    assert all(e == 0 and loss > 0 and 0 <= acc <= 1 for e, _, loss, acc in rec.running)
    assert rec.running[-1][2:] == pytest.approx((record["loss"], record["accuracy"]))


def test_resumes_after_the_last_checkpoint_even_with_a_half_written_file(ds, tmp_path):
    workdir = tmp_path / "run"
    first = Recorder(stop_after=2)
    stopped = training.train(parse_spec(TINY), ds, workdir, first)
    assert stopped.status == training.STOPPED
    assert [r["epoch"] for r in first.epochs] == [1, 2]
    pointer = json.loads((workdir / "backup" / "checkpoint.json").read_text())
    assert pointer == {"epoch": 2, "weights": "epoch-0002.weights.h5"}
    # A worker killed while writing epoch 3's checkpoint leaves a broken file behind.
    (workdir / "backup" / "epoch-0003.weights.h5").write_bytes(b"\x89HDF\r\n half written")

    second = Recorder()
    outcome = training.train(parse_spec(TINY), ds, workdir, second)
    assert outcome.status == training.COMPLETED
    assert [r["epoch"] for r in second.epochs] == [3, 4]  # resumed, not restarted
    assert [h["epoch"] for h in outcome.history] == [1, 2, 3, 4]


def test_the_checkpoint_keeps_its_spec_and_refuses_to_resume_another(ds, tmp_path):
    workdir = tmp_path / "run"
    assert read_checkpoint(workdir) is None
    assert training.train(parse_spec(TINY), ds, workdir, Recorder(stop_after=1)).status == training.STOPPED
    state = read_checkpoint(workdir)
    assert state.epoch == 1 and state.weights == workdir / "backup" / "epoch-0001.weights.h5" and state.weights.exists()
    assert state.best_weights is None  # no early stopping
    assert state.spec == parse_spec(TINY).to_dict() == json.loads((workdir / "backup" / "spec.json").read_text())

    wider = dict(TINY, layers=[dict(TINY["layers"][0], filters=8), *TINY["layers"][1:]], learning_rate=0.01)
    with pytest.raises(LabError, match=(
        r"^the checkpoint at epoch 1 belongs to another spec \(learning_rate: 0.001 in the checkpoint, 0.01 given; "
        r"layer 00: Conv2D filters=4 .* in the checkpoint, Conv2D filters=8 .* given\); resume it with its own spec, "
        r"or discard the checkpoint to start afresh$"
    )):
        training.train(parse_spec(wider), ds, workdir, Recorder())
    assert read_checkpoint(workdir) == state  # refused before anything was touched


def test_holdout_keeps_the_test_set_out_of_validation(ds):
    splits = training.make_splits(parse_spec(TINY), ds)
    assert len(splits.x_val) == len(ds.x_train) // 10 and len(splits.x_train) + len(splits.x_val) == len(ds.x_train)
    notebook = training.make_splits(parse_spec(dict(TINY, validation="test")), ds)
    assert notebook.x_val is ds.x_test


# min_delta 1.0 on accuracy: only the first epoch can count as an improvement, so early stopping
# with patience 2 ends every run at epoch 3 and restores epoch 1's weights, whatever the data.
STOPS_AT_3 = tiny_spec(epochs=6, early_stopping={"patience": 2, "min_delta": 1.0})


@pytest.fixture()
def epoch1_loss(ds, tmp_path):
    """The test loss of the model after one epoch: what restoring epoch 1's weights must give."""
    return training.train(parse_spec(tiny_spec(epochs=1)), ds, tmp_path / "one", Recorder()).test_loss


def test_early_stopping_ends_the_run_and_restores_the_best_epoch(ds, tmp_path, epoch1_loss):
    outcome = training.train(parse_spec(STOPS_AT_3), ds, tmp_path / "run", Recorder())
    assert outcome.status == training.COMPLETED
    assert [h["epoch"] for h in outcome.history] == [1, 2, 3] and outcome.stopped_epoch == 3
    assert outcome.stop_reason == (
        "early stopping: no val_accuracy improvement for 2 epochs; weights restored from epoch 1"
    )
    assert outcome.test_loss == pytest.approx(epoch1_loss, rel=1e-5)


def test_early_stopping_keeps_its_patience_and_best_weights_across_a_resume(ds, tmp_path, epoch1_loss):
    workdir = tmp_path / "run"
    assert training.train(parse_spec(STOPS_AT_3), ds, workdir, Recorder(stop_after=2)).status == training.STOPPED
    assert json.loads((workdir / "backup" / "checkpoint.json").read_text())["best"] == "best-0001.npz"
    assert read_checkpoint(workdir).best_weights == workdir / "backup" / "best-0001.npz"

    second = Recorder()
    outcome = training.train(parse_spec(STOPS_AT_3), ds, workdir, second)
    assert [r["epoch"] for r in second.epochs] == [3]  # patience counted epoch 2 from before the stop
    assert outcome.stopped_epoch == 3 and outcome.stop_reason.endswith("weights restored from epoch 1")
    assert outcome.test_loss == pytest.approx(epoch1_loss, rel=1e-5)


def test_a_run_killed_after_early_stopping_finishes_without_training_more(ds, tmp_path, epoch1_loss):
    workdir = tmp_path / "run"
    # Checkpointed up to epoch 3, as if killed while scoring after early stopping (patience 5 lets
    # the first run get there; patience 2 means it had stopped). Up to the stop both train alike,
    # so giving the checkpoint STOPS_AT_3's spec makes it the one a kill while scoring leaves.
    patient = tiny_spec(epochs=6, early_stopping={"patience": 5, "min_delta": 1.0})
    assert training.train(parse_spec(patient), ds, workdir, Recorder(stop_after=3)).status == training.STOPPED
    write_json(workdir / "backup" / "spec.json", parse_spec(STOPS_AT_3).to_dict())

    second = Recorder()
    outcome = training.train(parse_spec(STOPS_AT_3), ds, workdir, second)
    assert outcome.status == training.COMPLETED and second.epochs == []
    assert [h["epoch"] for h in outcome.history] == [1, 2, 3] and outcome.stopped_epoch == 3
    assert outcome.test_loss == pytest.approx(epoch1_loss, rel=1e-5)
