"""The recipe's ablation: each airbench option added, one at a time, to the previous step, from
the lab's earlier `fast` network (the ResNet-lite, now the `resnet` preset) to the airbench
recipe (the `fast` preset); writes docs/recipe.md.

    .venv/bin/python scripts/recipe_ablation.py [--epochs 7] [--seeds 1] [--steps 0-10]
        [--data ../shared/datasets/cifar10-jpeg.tar.gz] [--out docs/recipe.md]

Every step trains through the lab's queue on the real data with the same epochs, validation on
the 5,000-image holdout and the test set scored once; runs alternate with reference epochs
(scripts/reference_epoch.py) so that seconds per epoch are also given in that unit. Per step:
test accuracy at the fixed epochs, the first epoch whose validation accuracy reached 85%, and
seconds per epoch. Run it on an otherwise idle host; a full pass is about 11 x the fast preset
(7 epochs: about 50 minutes on a Zen 4 host, 2026-11-29). `--steps 10` re-runs step 10 only and keeps
the other rows of the report it rewrites.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from _bootstrap import ROOT  # the checkout, put on sys.path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
TARGET = 0.85


@dataclass(frozen=True)
class Step:
    label: str
    why: str  # what the anchors measured, or why it should help
    change: Callable[[dict], dict]


def _resnet() -> dict:
    from cifar_core.spec.presets import get_preset

    return get_preset("resnet")


def _airbench_shape(doc: dict) -> dict:
    """airbench's layers, but each recipe option still off: a learned 2x2 first conv, standard
    BatchNorm and init, ReLU, no logit scale; the resnet preset's training settings."""
    from cifar_core.spec.presets import AIRBENCH_WIDTHS, airbench_layers

    def plain(layer: dict) -> dict:
        if layer["type"] == "Whitening":
            return {"type": "Conv2D", "filters": 24, "kernel_size": 2, "use_bias": True}
        if layer["type"] == "BatchNormalization":
            return {"type": "BatchNormalization", "momentum": 0.9}
        if layer["type"] == "Activation":
            return {"type": "Activation", "activation": "relu"}
        if layer.get("initializer") == "dirac":
            return {**layer, "initializer": "glorot_uniform"}
        return layer

    return {**doc, "layers": [plain(dict(layer)) for layer in airbench_layers(AIRBENCH_WIDTHS)]}


def _from_airbench(*keys: str, layers: str | None = None) -> Callable[[dict], dict]:
    """A step that takes these settings, and its layers of type `layers`, from the fast preset
    (the layers sit at the same positions from step 1 on), so that each option is defined once."""
    def change(doc: dict) -> dict:
        from cifar_core.spec.presets import get_preset

        recipe = get_preset("fast")
        changed = {**doc, **{k: recipe[k] for k in keys}}
        if layers is not None:
            changed["layers"] = [theirs if theirs["type"] == layers else ours
                                 for ours, theirs in zip(doc["layers"], recipe["layers"], strict=True)]
        return changed

    return change


# airbench94's schedule and lookahead, which the presets gave up for airbench94_muon's (the last step).
# Lookahead: every 5 steps the weights are set to an average whose retention over those 5 steps is
# 0.95^5 x (steps done/all)^3; a per-step EMA of momentum 0.95 x (done/all)^0.6 retains the same.
TRIANGULAR = {"type": "one_cycle", "warmup": 0.23, "final_fraction": 0.07, "initial_fraction": 0.2}
LOOKAHEAD = {"ema_momentum": 0.95, "ema_warmup": 0.6, "lookahead_steps": 5}


def _muon(doc: dict) -> dict:
    """airbench94_muon's training: Muon for the kernels, rates decaying linearly, no lookahead."""
    without = {k: v for k, v in doc.items() if k not in LOOKAHEAD}
    return _from_airbench("muon_learning_rate", "muon_momentum", "schedule")(without)


STEPS = [
    Step("resnet: ResNet-lite 32-128, batch 128, SGD one-cycle, random flips, 10-view TTA",
         "the baseline: the lab's `fast` network before this recipe", lambda _: _resnet()),
    Step("airbench's layout (conv-pool-BN groups, global max-pool), plain options",
         "the network shape alone, with a learned first conv, ReLU and standard BatchNorm", _airbench_shape),
    Step("+ batch 1024, airbench's SGD rates and triangular schedule",
         "large batches use the CPU better (bench_steptime); airbench's per-1024 rate, momentum 0.85, decay (biases too)",
         lambda doc: {**_from_airbench("learning_rate", "momentum", "weight_decay", "decay_biases", "batch_size")(doc),
                      "schedule": TRIANGULAR}),
    Step("+ logits scaled by 1/9",
         "airbench94's output scale; placed before the options that raise rates, which fell apart without it",
         _from_airbench("logit_scale")),
    Step("+ frozen whitening first layer", "airbench ablation: 35 -> 22 epochs to 94% (main_whiten.py)",
         _from_airbench(layers="Whitening")),
    Step("+ BatchNorm without scale, biases at 64x the rate",
         "airbench ablation: 22 -> 17 epochs to 94% (main_scalebias.py)",
         _from_airbench("bn_bias_lr_multiplier", layers="BatchNormalization")),
    Step("+ dirac (identity) initialisation", "airbench ablation: 17 -> 14 epochs to 94% (main_dirac.py)",
         _from_airbench(layers="Conv2D")),
    Step("+ GELU", "airbench94 uses GELU throughout", _from_airbench(layers="Activation")),
    Step("+ lookahead (weights reset to their EMA every 5 steps, warming up)", "hlb-cifar10's lookahead, kept by airbench94",
         lambda doc: {**doc, **LOOKAHEAD}),
    Step("+ alternating flip, 1-pixel TTA shifts",
         "airbench: alternating flips are worth about a tenth of the epochs", _from_airbench("augment", "tta_shift")),
    Step("+ Muon for the convolution kernels, rates decaying linearly, no lookahead (= the fast preset)",
         "airbench94_muon: 94% in 8 epochs against airbench94's 9.9", _muon),
]


def first_epoch_at(history, target: float) -> int | None:
    hit = history[history["val_accuracy"] >= target]
    return None if hit.empty else int(hit["epoch"].iloc[0])


def _steps(text: str) -> list[int]:
    first, _, last = text.partition("-")
    return list(range(int(first), int(last or first) + 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared/datasets/cifar10-jpeg.tar.gz"))
    parser.add_argument("--epochs", type=int, default=7)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--steps", default=f"0-{len(STEPS) - 1}", help="which steps, e.g. 0-9 or 3")
    parser.add_argument("--out", default=str(ROOT / "docs/recipe.md"))
    args = parser.parse_args()
    os.environ["CIFAR_LAB_HOME"] = os.environ.get("CIFAR_LAB_HOME") or tempfile.mkdtemp(prefix="ablation-")

    from bench_presets import reference_epoch, run_one

    docs, doc = [], {}
    for step in STEPS:
        doc = step.change(doc)
        docs.append({**doc, "name": f"ablation-{len(docs)}", "description": step.label})
    rows = []
    ref_before = reference_epoch(args.data)
    for i in _steps(args.steps):
        runs = []
        for seed in range(args.seeds):
            detail = run_one(docs[i], args.data, seed, args.epochs)
            if detail.test_accuracy is None or not detail.train_seconds:
                raise SystemExit(f"step {i} seed {seed} ended {detail.job.state}: {detail.job.error}; "
                                 f"its run is in {os.environ['CIFAR_LAB_HOME']}")
            ref_after = reference_epoch(args.data)
            runs.append((detail, (ref_before + ref_after) / 2))
            ref_before = ref_after
        accs = [d.test_accuracy for d, _ in runs]
        per_epoch = [d.train_seconds / len(d.history) for d, _ in runs]
        reach = [first_epoch_at(d.history, TARGET) for d, _ in runs]
        row = (i, statistics.mean(accs), statistics.stdev(accs) if len(accs) > 1 else 0.0, reach,
               statistics.mean(per_epoch), statistics.mean(s / r for s, (_, r) in zip(per_epoch, runs)))
        rows.append(row)
        print(f"step {i}: {STEPS[i].label}: test {row[1]:.4f}, 85% val at epochs {reach}, {row[4]:.0f} s/epoch "
              f"({row[5]:.2f} ref epochs)", flush=True)
    out = Path(args.out)
    write_report(out, report(rows, args, kept_rows(out, {row[0] for row in rows})))
    print(f"wrote {args.out}")


HAND_WRITTEN = "## Single checks"


def write_report(path: Path, generated: str) -> None:
    """Write the generated report, keeping the hand-written section (from HAND_WRITTEN on) of the
    file it replaces: those are results of other runs, which a re-run of the script must not lose."""
    old = path.read_text() if path.exists() else ""
    kept = old[old.index(HAND_WRITTEN):] if HAND_WRITTEN in old else ""
    path.write_text(generated + ("\n" + kept if kept else ""))


def kept_rows(path: Path, rerun: set[int]) -> tuple[str, dict[int, str]]:
    """When the report at `path` was written, and its table rows, by step, for the steps not re-run
    now: re-running a few steps (`--steps 10`) keeps the others' figures, each step's label updated
    to today's."""
    if not path.exists():
        return "", {}
    text = path.read_text()
    written = re.search(r"^Written (\S+ \S+) by", text, re.MULTILINE)
    kept = {}
    for line in text.splitlines():
        match = re.match(r"\| (\d+) \| ", line)
        step = int(match.group(1)) if match else -1
        if 0 <= step < len(STEPS) and step not in rerun:
            cells = line.split(" | ")
            kept[step] = " | ".join([cells[0], STEPS[step].label, *cells[2:]])
    return (written.group(1) if written else "an earlier date"), kept


def _accuracy_of(row: str) -> float:
    return float(row.split(" | ")[2].split("%")[0]) / 100  # "| 9 | label | 83.89% ± 0.0 | ..."


def report(rows, args, kept: tuple[str, dict[int, str]] = ("", {})) -> str:
    earlier, kept = kept
    lines = [
        "# The recipe, one option at a time",
        "",
        f"Written {time.strftime('%Y-%m-%d %H:%M')} by `scripts/recipe_ablation.py --epochs {args.epochs} --seeds {args.seeds}"
        f"{' --steps ' + args.steps if kept else ''}` on `{Path(args.data).name}`"
        f"{f' (the other steps: rows of the report written {earlier}, kept)' if kept else ''}. Each step adds one option to the step "
        f"before; every run trains {args.epochs} epochs, validates on the 5,000-image holdout and scores the test set "
        "once. Seconds per epoch include validation; *ref epochs* divides them by a reference epoch (plain Keras, the "
        "notebook's original exp4, batch 32) timed just before and after the run.",
        "",
        "| step | change | test accuracy | vs step before | first epoch at 85% val | s/epoch | ref epochs/epoch | anchor's figure |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    new = {row[0]: row for row in rows}
    before = None
    for i in sorted({*new, *kept}):
        if i not in new:
            lines.append(kept[i])
            before = _accuracy_of(kept[i])
            continue
        _, acc, spread, reach, seconds, ref = new[i]
        reached = ", ".join("never" if r is None else str(r) for r in reach)
        delta = "" if before is None else f"{(acc - before) * 100:+.1f} points"
        lines.append(f"| {i} | {STEPS[i].label} | {acc:.2%} ± {spread * 100:.1f} | {delta} | {reached} | {seconds:.0f} | "
                     f"{ref:.2f} | {STEPS[i].why} |")
        before = acc
    return "\n".join(lines + ["", NOT_PORTED]) + "\n"


NOT_PORTED = """## What did not port, and why

- **Half precision and channels-last memory layout**: airbench trains in fp16 on a GPU. A Zen 3
  CPU (AVX2) has no fp16 or bf16 arithmetic; on a Zen 4 one (AVX512_BF16) Keras's `mixed_bfloat16`
  policy did not pay either: `bench_steptime.py --specs fast,best --batches 1024 --threads 2:1
  --onednn 1 --precision float32,mixed_bfloat16` gave `fast` 1435 against 1417 images/s (+1%) and
  `best` 557 against 568 (-2%) on 2026-11-29, so jobs train in float32. Keras on a CPU is
  channels-last already.
- **PyTorch's default initialisation**: airbench's layers keep torch's init (uniform, bound
  1/sqrt(fan_in)) where they are not dirac; the lab keeps Keras's Glorot. Tried on `fast` (seeds 0
  and 1, alternating with the current preset, 2026-11-28): 83.70 and 83.92% against 83.89 and
  84.20%, per-epoch validation curves almost the same: no gain, not adopted.
- **Test-time augmentation's form**: airbench averages 6 views' logits, the untranslated pair
  weighted; the lab averages 10 views' probabilities. On saved `fast` models the two, and an
  average of log-probabilities, scored within 0.1 points of each other (seed 0: 83.89, 83.88,
  83.83%; seed 1: 84.20, 84.22, 84.19%); flips alone give about +1 point over no TTA.
- **Lookahead over BatchNorm statistics**: airbench's lookahead also averages the running means
  and variances; the lab averages the weights only. Re-estimating the statistics of the averaged
  `fast` weights (80 training-mode batches of 1,000) moved test accuracy by +0.2 and -0.03 points
  (seeds 0, 1): not worth a step in every run.
- **torch.compile** has no counterpart to choose: Keras already runs the train step as one traced
  `tf.function`. XLA (`jit_compile`) made the `fast` (airbench) train step slower on this CPU (514-587
  against 737-752 images/s, batch 1024, 2026-11-28), so the lab's runner does not use it.
- **Lookahead's exact form**: airbench updates its average every 5 steps, with a retention of
  0.95^5 x progress^3, and starts after epoch 3; the lab updates it every step with a momentum of
  0.95 x progress^0.6 (`ema_warmup`), which retains the same over 5 steps and is near zero before
  epoch 3 anyway.
- **Epoch fractions** (airbench94 trains 9.9 epochs): the lab counts whole epochs.
- **Summed loss**: airbench sums the loss over the batch; the lab averages it, so its rates are
  airbench's multiplied by the batch size (`cifar_core/spec/presets.py` converts them)."""


if __name__ == "__main__":
    main()
