"""The model helper (`cifar_core.analysis.helper`, issue 31 item 3): the server's predictions and
exports run in one warm helper process, reused across requests and replaced when it dies; what it
refuses comes back as one line. Real processes on the shared trained lab (trainedlab)."""

from __future__ import annotations

import os
import signal

import numpy as np
import pandas as pd
import pytest
from trainedlab import lab  # noqa: F401  (the shared trained lab)

from cifar_core.analysis import helper
from cifar_core.data.sources import load_dataset
from cifar_core.errors import DataError, LabError, NotFound
from cifar_core.lab import Lab


@pytest.fixture()
def ds(lab, small_data):
    return load_dataset(str(small_data))


@pytest.fixture(autouse=True)
def _stopped():
    helper.stop_all()  # the pages' tests may have left this process's helper running
    yield
    helper.stop_all()  # no helper outlives its test


def test_the_helper_answers_a_prediction_and_is_reused(ds):
    assert helper.running() is None  # none until a page asks
    top = Lab().predict_image([1, 3], ds.x_test[4], ds.class_names, 3, {1: "tiny", 3: "dense"})
    first = helper.running()
    assert first is not None and first.pid != os.getpid()
    assert top["run"].tolist() == [1, 1, 1, 3, 3, 3] and top["label"].tolist()[:1] == ["tiny"]
    here = Lab().predict_image_here([1, 3], ds.x_test[4], ds.class_names, 3, {1: "tiny", 3: "dense"})
    pd.testing.assert_frame_equal(top, here)  # the same answer as in this process
    again = Lab().predict_image([3], ds.x_test[5], ds.class_names, 2)
    assert len(again) == 2 and helper.running() is first  # one warm helper serves every request


def test_a_killed_helper_is_replaced_and_the_next_prediction_answers(ds):
    Lab().predict_image([1], ds.x_test[0], ds.class_names, 1)
    dead = helper.running()
    os.kill(dead.pid, signal.SIGKILL)
    dead.proc.wait()
    top = Lab().predict_image([1], ds.x_test[0], ds.class_names, 1)
    assert len(top) == 1 and top["class"].iloc[0] in ds.class_names
    assert helper.running().pid != dead.pid


def test_bad_input_comes_back_as_one_line_of_the_same_error_class(ds):
    with pytest.raises(NotFound) as missing:
        Lab().predict_image([999], ds.x_test[0], ds.class_names)
    with pytest.raises(DataError) as shape:
        Lab().predict_image([1], np.zeros((16, 16, 3), np.uint8), ds.class_names)
    with pytest.raises(LabError) as nothing:
        Lab().predict_image([], ds.x_test[0], ds.class_names)
    with pytest.raises(LabError) as wrong_kind:
        Lab().predict_image([1], np.zeros((32, 32, 3), np.uint8), ds.class_names, k="three")
    for exc, start in ((missing, "no run 999"), (shape, "run 1's model takes images shaped (32, 32, 3), got (16, 16, 3)"),
                       (nothing, "no model chosen"), (wrong_kind, "TypeError: ")):
        assert str(exc.value).startswith(start) and "\n" not in str(exc.value), str(exc.value)
    assert len(Lab().predict_image([1], ds.x_test[0], ds.class_names, 1)) == 1  # the helper survived them all
