"""The unit of training time (scripts/reference_epoch.py): the notebook's original exp4, one fit call an epoch."""

from __future__ import annotations

import pytest

from cifar_core.testing.datagen import synthetic_arrays


@pytest.fixture
def reference(script):
    return script("reference_epoch")


def test_the_reference_net_is_the_notebooks_original_exp4(reference):
    model = reference.reference_net()
    assert model.count_params() == 122_570
    assert [type(layer).__name__ for layer in model.layers] == [
        "Rescaling", "Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D", "Conv2D", "Flatten", "Dense", "Dense"]
    assert [layer.padding for layer in model.layers if type(layer).__name__ == "Conv2D"] == ["valid"] * 3


def test_each_timed_epoch_trains_on_from_the_last_one_in_its_own_fit_call(reference):
    x, y = synthetic_arrays(10, seed=1)  # 100 images: 4 batches of 32 an epoch
    model = reference.reference_net()
    seconds, teardowns = reference.time_epochs(model, x, y, epochs=3)
    assert len(seconds) == len(teardowns) == 3
    assert all(s > 0 for s in seconds) and all(t >= 0 for t in teardowns)
    assert int(model.optimizer.iterations.numpy()) == 3 * 4  # one model, trained on across the calls
