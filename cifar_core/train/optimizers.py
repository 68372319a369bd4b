"""The optimizer a spec asks for: Keras's own, wrapped by `recipe_optimizer_class` when the spec
uses a setting Keras optimizers lack (a rate multiplier for BatchNorm biases, a warming-up weight
average, Muon steps for convolution kernels). Keras is imported inside the functions.

Muon (Keller Jordan's, as airbench94_muon uses it): a convolution kernel's Nesterov momentum,
reshaped to a (kernel_h * kernel_w * in, out) matrix, is orthogonalised by `orthogonalize` (all its
singular values set near 1) and taken as the step, after the kernel is rescaled to a norm of
sqrt(out): with BatchNorm after the convolution the kernel's scale is free, so this fixes the
step's size relative to the weights. Its rate follows the spec's schedule, at
muon_learning_rate / learning_rate times the optimizer's rate.
"""

from __future__ import annotations

import functools

from cifar_core.spec.schema import ExperimentSpec
from cifar_core.train import schedules

_NO_DECAY = ["bias", "gamma", "beta"]  # weight decay shrinks kernels only, as is usual,
_NO_DECAY_WITH_BIASES = ["gamma"]  # or also biases and BatchNorm shifts with the spec's decay_biases


def make_optimizer(spec: ExperimentSpec, steps_per_epoch: int):
    """The Keras optimizer the spec asks for, on its learning-rate schedule."""
    learning_rate = schedules.make_schedule(spec.schedule, spec.learning_rate, steps_per_epoch, spec.epochs)
    classes = optimizer_classes()
    if spec.optimizer not in classes:
        raise ValueError(f"optimizer {spec.optimizer!r} is not one of {', '.join(classes)}")
    args = {"learning_rate": learning_rate}
    if spec.optimizer == "rmsprop":
        args["momentum"] = spec.momentum
    if spec.optimizer == "adamw":
        args["weight_decay"] = spec.weight_decay
    if spec.optimizer == "sgd":
        # Keras applies weight decay decoupled: w -= lr * wd * w
        args.update(momentum=spec.momentum, nesterov=spec.nesterov, weight_decay=spec.weight_decay or None)
    if spec.ema_momentum > 0:  # validation swaps the average in (averaging.callbacks); fit ends with it
        args.update(use_ema=True, ema_momentum=spec.ema_momentum, ema_overwrite_frequency=spec.lookahead_steps or None)
    cls = classes[spec.optimizer]
    if spec.bn_bias_lr_multiplier != 1 or spec.ema_momentum > 0 or spec.muon_learning_rate > 0:
        cls, args["bn_bias_lr_multiplier"] = recipe_optimizer_class(cls), spec.bn_bias_lr_multiplier
    if spec.muon_learning_rate > 0:
        args.update(muon_ratio=spec.muon_learning_rate / spec.learning_rate, muon_momentum=spec.muon_momentum)
    if spec.ema_warmup > 0:
        args.update(ema_warmup=spec.ema_warmup, total_steps=steps_per_epoch * spec.epochs)
    optimizer = cls(**args)
    if spec.weight_decay > 0:
        # Keras decays every variable by the base rate: a BatchNorm bias with bn_bias_lr_multiplier
        # shrinks by the same fraction per step as a kernel (as in airbench), not 64x as much
        optimizer.exclude_from_weight_decay(var_names=_NO_DECAY_WITH_BIASES if spec.decay_biases else _NO_DECAY)
    return optimizer


@functools.cache
def recipe_optimizer_class(base: type) -> type:
    """The Keras optimizer `base`, but BatchNormalization biases (variables named "beta") take
    `bn_bias_lr_multiplier` times the learning rate, as airbench trains them (64x): Keras
    optimizers have one rate for all variables, this scales it in the per-variable update. And
    with use_ema, the end of fit copies the average into every variable it was built with, also
    those no longer trainable (a frozen Whitening bias), where Keras's would fail on the count.
    With `ema_warmup` p > 0 the average's momentum at step t of `total_steps` is
    ema_momentum * (t / total_steps) ** p instead of fixed (airbench warms its average up so).
    With `muon_ratio` r > 0, 4-D kernels take Muon steps at r times the rate instead of `base`'s
    (see the module's docstring); Keras's weight decay on them is undone by the rescaling."""
    import keras
    from keras import ops

    @keras.saving.register_keras_serializable(package="cifar_lab", name=f"Recipe{base.__name__}")
    class Recipe(base):
        def __init__(self, bn_bias_lr_multiplier: float = 1.0, ema_warmup: float = 0.0, total_steps: int = 1,
                     muon_ratio: float = 0.0, muon_momentum: float = 0.6, **kwargs):
            super().__init__(**kwargs)
            self.bn_bias_lr_multiplier = float(bn_bias_lr_multiplier)
            self.ema_warmup, self.total_steps = float(ema_warmup), max(int(total_steps), 1)
            self.muon_ratio, self.muon_momentum = float(muon_ratio), float(muon_momentum)

        def build(self, var_list):
            if self.built:
                return
            super().build(var_list)
            self._muon_buffers = [
                self.add_variable_from_reference(var, name="muon_momentum")
                if self.muon_ratio > 0 and len(var.shape) == 4 else None
                for var in var_list
            ]

        def _update_model_variables_moving_average(self, trainable_variables):
            if not (self.use_ema and self.ema_warmup > 0):
                return super()._update_model_variables_moving_average(trainable_variables)
            done = ops.minimum(ops.cast(self.iterations + 1, "float32") / self.total_steps, 1.0)
            started = ops.cast(ops.not_equal(self.iterations, 0), "float32")  # the average starts as zeros
            momentum = started * self.ema_momentum * ops.power(done, self.ema_warmup)
            for var, average in zip(trainable_variables, self._model_variables_moving_average):
                if average is not None:
                    m = ops.cast(momentum, var.dtype)
                    average.assign(m * average + (1 - m) * var)

        def update_step(self, gradient, variable, learning_rate):
            # the TensorFlow backend passes the tf.Variable: find the Keras one by its index
            index = self._get_variable_index(variable)
            if self._muon_buffers[index] is not None:  # a 4-D kernel, with Muon on
                return self._muon_step(gradient, variable, learning_rate * self.muon_ratio, self._muon_buffers[index])
            if self._trainable_variables[index].name == "beta":
                learning_rate = learning_rate * self.bn_bias_lr_multiplier
            return super().update_step(gradient, variable, learning_rate)

        def _muon_step(self, gradient, variable, learning_rate, buffer):
            mu = self.muon_momentum
            self.assign(buffer, mu * buffer + gradient)
            step = gradient + mu * buffer  # Nesterov
            out = variable.shape[-1]
            self.assign(variable, variable * (out ** 0.5 / (ops.norm(ops.reshape(variable, (-1,))) + 1e-12)))
            update = orthogonalize(ops.reshape(step, (-1, out)))
            self.assign_sub(variable, ops.cast(learning_rate, variable.dtype) * ops.reshape(update, variable.shape))

        def finalize_variable_values(self, var_list):
            super().finalize_variable_values(self._trainable_variables if self.built else var_list)

        def get_config(self) -> dict:
            return {**super().get_config(), "bn_bias_lr_multiplier": self.bn_bias_lr_multiplier,
                    "ema_warmup": self.ema_warmup, "total_steps": self.total_steps,
                    "muon_ratio": self.muon_ratio, "muon_momentum": self.muon_momentum}

    Recipe.__name__ = Recipe.__qualname__ = f"Recipe{base.__name__}"
    return Recipe


def orthogonalize(matrix, steps: int = 3):
    """Muon's Newton-Schulz iteration: `matrix` with its singular values pushed towards 1 (to
    roughly 0.5..1.5 in 3 steps: Keller Jordan's quintic, which trades exactness for speed)."""
    from keras import ops

    a, b, c = 3.4445, -4.7750, 2.0315
    tall = matrix.shape[0] > matrix.shape[1]
    x = ops.transpose(matrix) if tall else matrix
    x = x / (ops.norm(x) + 1e-7)  # the Frobenius norm bounds the largest singular value
    for _ in range(steps):
        gram = ops.matmul(x, ops.transpose(x))
        x = a * x + ops.matmul(b * gram + c * ops.matmul(gram, gram), x)
    return ops.transpose(x) if tall else x


def optimizer_classes() -> dict[str, type]:
    """The Keras optimizers a spec can name, by the name it uses."""
    import keras

    O = keras.optimizers
    return {"adam": O.Adam, "adamw": O.AdamW, "sgd": O.SGD, "rmsprop": O.RMSprop}


def optimizer_custom_objects() -> dict[str, type]:
    """The lab's optimizer classes, registered, by name (for keras.saving.load_model)."""
    return {cls.__name__: cls for cls in map(recipe_optimizer_class, optimizer_classes().values())}
