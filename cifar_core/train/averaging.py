"""Weight averaging: an exponential moving average (EMA) of the weights, used for validation,
the test set and the saved model.

The average is kept by the Keras optimizer itself (`use_ema`, `ema_momentum`; set by
`models.compile_model` from the spec's `ema_momentum`): after every step avg = m * avg + (1 - m) * w,
in the compiled train step. Its variables are optimizer state, so each epoch's checkpoint holds
them and a resumed run carries on with the same average. Validation swaps the average into the
model and back (`callbacks`); the end of `fit` copies it into the model for good, so the test set
is scored and the model saved with the averaged weights. Batch-norm moving statistics are not
averaged (they are averages already).

Lookahead (`lookahead_steps` k, with `ema_momentum`): every k steps the weights themselves are set
to their average and training goes on from there (the optimizer's `ema_overwrite_frequency`), as
airbench's lookahead copies its average back into the net every few steps. Its average is
updated every step, where airbench's is updated every k steps.
"""

from __future__ import annotations

import keras

from cifar_core.spec.schema import ExperimentSpec


def callbacks(spec: ExperimentSpec) -> list:
    """The callbacks `fit` needs for the spec's averaging (none when it is off)."""
    # swap_on_epoch stays off: the checkpoint must hold the raw weights, the average as optimizer state
    return [keras.callbacks.SwapEMAWeights(swap_on_epoch=False)] if spec.ema_momentum > 0 else []
