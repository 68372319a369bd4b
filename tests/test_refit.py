"""Refit (issue 30, item 8): a finished holdout run's configuration trained again on train +
holdout, validating on nothing, the test set scored once at the end; labelled and grouped apart.
Real training on the small generated data, through the CLI as a user runs it."""

from __future__ import annotations

import json

import pytest
from pagetools import open_page, rerun, texts

from cifar_core.data.dataset import holdout_split
from cifar_core.data.sources import load_dataset
from cifar_core.errors import LabError, SpecError
from cifar_core.jobs import queue, store
from cifar_core.lab import Lab
from cifar_core.spec.validate import parse_spec
from cifar_core.testing.datagen import tiny_spec
from cifar_core.testing.procs import ROOT, cli

BATCH = 40  # the small data's 400 training images: 10 batches, 9 once its holdout (40) is out


def test_a_refit_trains_on_train_plus_holdout_scores_the_test_set_and_is_grouped_apart(lab_home, small_data,
                                                                                        monkeypatch):
    lab = Lab()
    (source_id,) = lab.submit(tiny_spec(name="hold", batch_size=BATCH), str(small_data)).job_ids
    cli("worker", "--exit-when-idle", timeout=600)
    out = cli("refit", str(source_id)).stdout
    refit_id = int(out.split("job ")[1].split()[0])
    cli("worker", "--exit-when-idle", timeout=600)

    conn = store.connect()
    try:
        source, refit = queue.get_job(conn, source_id), queue.get_job(conn, refit_id)
        group = store.group_row(conn, refit.group_id, queue.GROUP_REFIT)
        test_accuracy = store.run_row(conn, refit_id)["test_accuracy"]
    finally:
        conn.close()
    ds = load_dataset(str(small_data))
    train_idx, _ = holdout_split(ds)
    assert len(train_idx) < len(ds.x_train) == 400
    assert refit.state == queue.SUCCEEDED, refit.error
    # Steps per epoch count the images trained: every training image for the refit, the holdout run's split for it.
    assert (source.batches, refit.batches) == (len(train_idx) // BATCH, len(ds.x_train) // BATCH) == (9, 10)
    assert refit.name == "hold-refit" and refit.spec["validation"] == "none" and refit.spec["refit_of"] == source_id
    assert refit.spec["seed"] == source.spec["seed"] and refit.spec["epochs"] == source.spec["epochs"]
    assert test_accuracy is not None  # scored once, at the end
    assert group is not None and json.loads(group["detail_json"]) == {"source_run": source_id}
    assert source.group_id is None or source.group_id != refit.group_id

    board = json.loads(cli("runs", "--json").stdout)
    rows = {r["run"]: r for r in board}
    assert rows[refit_id]["refit_of"] == source_id and rows[source_id]["refit_of"] is None
    assert rows[refit_id]["best_val_accuracy"] is None and rows[refit_id]["test_accuracy"] == pytest.approx(test_accuracy)
    assert rows[refit_id]["config"] != rows[source_id]["config"]  # never pooled with the holdout runs
    shown = json.loads(cli("show", str(refit_id), "--json").stdout)
    assert shown["refit_of"] == source_id and all(h["val_accuracy"] is None for h in shown["history"])

    with pytest.raises(LabError, match=f"run {refit_id} is already a refit of run {source_id}: .*refit its holdout run"):
        lab.refit(refit_id)
    _pages_show_and_queue_refits(small_data, monkeypatch, source_id, refit_id)


def _pages_show_and_queue_refits(small_data, monkeypatch, source_id: int, refit_id: int) -> None:
    """The run page labels the refit; the model-choice page queues a refit, and says why it will not
    refit a refit."""
    monkeypatch.setenv("CIFAR_LAB_NO_WORKER", "1")
    monkeypatch.setenv("CIFAR_LAB_DATA", str(small_data))
    monkeypatch.syspath_prepend(str(ROOT))  # the pages import `pages.common`
    at = open_page("pages/run.py", run=str(refit_id))
    assert f"Refit of run #{source_id} on train + holdout" in texts(at.info)
    at = open_page("pages/choice.py", via_app=False)
    assert "Refit on train + holdout" in [s.value for s in at.subheader]
    at = rerun(at.selectbox(key="choice_refit_run").set_value(refit_id))
    at = rerun(at.button(key="choice_refit").click())
    assert f"run {refit_id} is already a refit of run {source_id}" in texts(at.error)
    at = rerun(at.selectbox(key="choice_refit_run").set_value(source_id))
    at = rerun(at.button(key="choice_refit").click())
    assert not at.error, texts(at.error)
    queued = max(j.id for j in Lab().jobs())
    assert f"Queued the refit of run #{source_id} as job #{queued}" in texts(at.success)
    assert Lab().jobs()[0].spec["refit_of"] == source_id


def test_refit_refuses_an_unfinished_run_and_one_that_validated_on_the_test_set(lab_home, small_data):
    lab = Lab()
    (queued,) = lab.submit(tiny_spec(name="waiting"), str(small_data)).job_ids
    with pytest.raises(LabError, match=f"run {queued} is queued: only a succeeded run can be refit; wait"):
        lab.refit(queued)
    (on_test,) = lab.submit(tiny_spec(name="nb", validation="test"), str(small_data)).job_ids
    with pytest.raises(LabError, match="validated on the test set .*train its spec with validation 'holdout' first"):
        lab.refit(on_test)
    assert len(lab.jobs()) == 2  # nothing was queued
    failed = cli("refit", str(queued), check=False)
    assert failed.returncode == 2 and "only a succeeded run can be refit" in failed.stderr


def test_a_spec_without_validation_refuses_early_stopping_and_refit_of_needs_it():
    with pytest.raises(SpecError, match="early_stopping watches the validation set, which validation='none' leaves out"):
        parse_spec(tiny_spec(validation="none", early_stopping={"patience": 2}))
    with pytest.raises(SpecError, match="refit_of=3 marks a refit .* set validation to 'none'"):
        parse_spec(tiny_spec(refit_of=3))
    assert parse_spec(tiny_spec(validation="none", refit_of=3)).refit_of == 3
