"""The Keras-style summary of a spec (`summarize`): output shape and parameter count of every
layer, as `model.summary()` would print them, computed without TensorFlow."""

from __future__ import annotations

from dataclasses import dataclass

from cifar_core.errors import SpecErrors
from cifar_core.spec.layers import INPUT_SHAPE, NUM_CLASSES
from cifar_core.spec.schema import ExperimentSpec
from cifar_core.spec.shapes import LayerSummary, _shape_text
from cifar_core.spec.validate import _validate


@dataclass(frozen=True)
class ModelSummary:
    name: str
    input_shape: tuple
    layers: tuple[LayerSummary, ...]
    total_params: int
    trainable_params: int
    non_trainable_params: int

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "input_shape": list(self.input_shape),
            "total_params": self.total_params,
            "trainable_params": self.trainable_params,
            "non_trainable_params": self.non_trainable_params,
            "layers": [
                {
                    "index": s.index,
                    "name": s.name,
                    "type": s.type,
                    "output_shape": list(s.output_shape),
                    "params": s.params,
                    "trainable": s.trainable,
                }
                for s in self.layers
            ],
        }

    def to_text(self) -> str:
        """A table like Keras's `model.summary()`, including the "rescale" layer the model starts with."""
        rows = [("rescale (Rescaling)", _shape_text((None, *self.input_shape)), "0")]
        rows += [(f"{s.name} ({s.type})", _shape_text(s.output_shape), f"{s.params:,}") for s in self.layers]
        w1 = max(30, max(len(r[0]) for r in rows) + 2)
        w2 = max(24, max(len(r[1]) for r in rows) + 2)
        w3 = max(12, max(len(r[2]) for r in rows) + 1)
        width = w1 + w2 + w3 + 2
        lines = [f'Model: "{self.name}"', "_" * width]
        lines.append(f" {'Layer (type)':<{w1}}{'Output Shape':<{w2}}{'Param #':>{w3}}")
        lines.append("=" * width)
        for k, (col1, col2, col3) in enumerate(rows):
            lines.append(f" {col1:<{w1}}{col2:<{w2}}{col3:>{w3}}")
            lines.append(("=" if k == len(rows) - 1 else "_") * width)
        for label, count in (
            ("Total params", self.total_params),
            ("Trainable params", self.trainable_params),
            ("Non-trainable params", self.non_trainable_params),
        ):
            lines.append(f" {label}: {count:,} ({_memory_text(count * 4)})")  # float32 weights
        lines.append("_" * width)
        return "\n".join(lines)


def summarize(spec_or_doc, input_shape=INPUT_SHAPE, num_classes: int = NUM_CLASSES) -> ModelSummary:
    """Output shape and parameter count of every layer, as Keras would report them; raises SpecErrors."""
    doc = spec_or_doc.to_dict() if isinstance(spec_or_doc, ExperimentSpec) else spec_or_doc
    spec, summaries, errors = _validate(doc, input_shape, num_classes)
    if errors:
        raise SpecErrors(errors)
    total = sum(s.params for s in summaries)
    trainable = sum(s.trainable for s in summaries)
    return ModelSummary(spec.name, tuple(input_shape), tuple(summaries), total, trainable, total - trainable)


def summarize_prefix(doc: dict, input_shape=INPUT_SHAPE, num_classes: int = NUM_CLASSES) -> ModelSummary | None:
    """The summary of the layers as far as they can be read: every layer when their shapes work
    out (even if another setting is wrong), else up to the first layer with a problem; None when
    not even the first layer can be summarised. Never raises on a bad document."""
    _, summaries, _ = _validate(doc, input_shape, num_classes)
    if not summaries:
        return None
    name = doc.get("name") if isinstance(doc, dict) else None
    total = sum(s.params for s in summaries)
    trainable = sum(s.trainable for s in summaries)
    return ModelSummary(name if isinstance(name, str) else "experiment", tuple(input_shape), tuple(summaries), total,
                        trainable, total - trainable)


def _memory_text(size: float) -> str:
    """Bytes as Keras's summary prints them: "478.79 KB"."""
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024:
            return f"{size:.2f} {unit}"
        size /= 1024
    return f"{size:.2f} TB"
