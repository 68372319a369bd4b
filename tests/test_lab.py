"""Experiments as the analyst submits them (cifar_core.lab): settings overridden at submit time
(`python -m cifar_core submit SPEC --epochs 2 ...`) are applied and the spec re-validated."""

from __future__ import annotations

import pytest

from cifar_core.errors import SpecErrors
from cifar_core.jobs import queue, store
from cifar_core.lab import submit_experiment
from cifar_core.spec.presets import get_preset
from cifar_core.spec.schema import parse_spec

OUT = {"type": "Dense", "units": 10, "activation": "softmax"}


@pytest.fixture()
def conn(lab_home):
    c = store.connect()
    yield c
    c.close()


def test_submit_applies_overrides_and_revalidates(conn, small_data):
    doc = get_preset("exp4")
    [job_id] = submit_experiment(conn, doc, str(small_data), epochs=2, batch_size=64, seed=7)
    queued = queue.get_job(conn, job_id).spec
    assert (queued["epochs"], queued["batch_size"], queued["seed"]) == (2, 64, 7)
    assert queued["layers"] == parse_spec(get_preset("exp4")).to_dict()["layers"] and doc["epochs"] == 20
    with pytest.raises(SpecErrors, match=r"epochs=0 is out of range 1\.\.1000") as info:
        submit_experiment(conn, doc, str(small_data), epochs=0)
    assert info.value.errors[0].field == "epochs"
    with pytest.raises(SpecErrors, match=r"unknown setting 'epoch': allowed keys are name, layers"):
        submit_experiment(conn, doc, str(small_data), epoch=3)
    with pytest.raises(SpecErrors, match=r"layer 0 \(Dense\) gets a 4-D input \(32, 32, 3\)"):
        submit_experiment(conn, doc, str(small_data), layers=[OUT])
    assert [j.id for j in queue.list_jobs(conn)] == [job_id]  # nothing invalid was queued
