"""The notebook's own recorded curves as read-only reference runs ("notebook, exp4").

The notebook printed the validation accuracy of every epoch of its five experiments, and the
training accuracy of every epoch of exp4 and exp5 only: of exp1 and exp3 it gives the first and
last training accuracy, of exp2 the last. The epochs it does not give are missing (NaN) in the
histories here: nothing is interpolated, and a chart shows those training curves as the points
known. It gives no losses, so the loss columns are missing too, and no learning rate per epoch
(the preset names the rate it was set to, but the notebook never recorded one), so that column is
missing as well: no curve is drawn for what was never recorded.

These runs were recorded in the notebook, not trained here: they are never written to the store,
never ranked in model choice, and have no run id (curves give them negative ids, which no run
has). They are drawn beside the lab's runs: on the leaderboard's comparison, on the run page and
in the reproduce report (cifar_core.report), with the per-epoch difference.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import pandas as pd

from cifar_core.analysis import curves as run_curves
from cifar_core.errors import LabError
from cifar_core.spec.presets import NOTEBOOK_PRESETS, get_preset

RECORDED = "recorded in the notebook, not trained here"
_ = None  # an epoch whose training accuracy the notebook does not give

# Validation (the test set) and training accuracy per epoch, as the notebook printed them.
VAL_ACCURACY: dict[str, tuple[float, ...]] = {
    "exp1": (0.1000,) * 20,
    "exp2": (
        0.3570, 0.3575, 0.3996, 0.4169, 0.4256, 0.4219, 0.4303, 0.4144, 0.4207, 0.4276,
        0.4307, 0.4321, 0.4377, 0.4389, 0.4397, 0.4446, 0.4382, 0.4386, 0.4386, 0.4464,
        0.4319, 0.4406, 0.4345, 0.4344, 0.4372, 0.4489, 0.4417, 0.4433, 0.4412, 0.4401,
        0.4486, 0.4368, 0.4332, 0.4515, 0.4280, 0.4467, 0.4413, 0.4483, 0.4433, 0.4491,
    ),
    "exp3": (0.4191, 0.4674, 0.4837, 0.5260, 0.5321, 0.5425, 0.5594, 0.5569, 0.5623, 0.5661),
    "exp4": (
        0.5960, 0.6555, 0.6931, 0.6940, 0.7233, 0.7138, 0.7284, 0.7210, 0.7346, 0.7314,
        0.7273, 0.7265, 0.7350, 0.7244, 0.7232, 0.7296, 0.7302, 0.7278, 0.7232, 0.7195,
    ),
    "exp5": (0.5457, 0.6490, 0.6758, 0.6937, 0.7070, 0.7223, 0.7230, 0.7341, 0.7362, 0.7557),
}
TRAIN_ACCURACY: dict[str, tuple[float | None, ...]] = {
    "exp1": (0.0994, *(_,) * 18, 0.0987),
    "exp2": (*(_,) * 39, 0.4814),
    "exp3": (0.3511, *(_,) * 8, 0.5957),
    "exp4": (
        0.4801, 0.6372, 0.6912, 0.7255, 0.7511, 0.7722, 0.7875, 0.8015, 0.8120, 0.8285,
        0.8404, 0.8490, 0.8578, 0.8678, 0.8750, 0.8842, 0.8889, 0.8963, 0.9044, 0.9084,
    ),
    "exp5": (0.4245, 0.5781, 0.6389, 0.6710, 0.6954, 0.7129, 0.7258, 0.7369, 0.7461, 0.7509),
}
# What the notebook's curves say, in the lab's verdicts (cifar_core.diagnosis) and in words: the
# notebook author's own reading for exp1, exp4 and exp5; exp2 and exp3 as their curves show.
READING: dict[str, tuple[str, str]] = {
    "exp1": ("did_not_learn", "it never learned: validation accuracy stayed at 10.0%, chance, for all 20 epochs"),
    "exp2": ("underfitting", "it levelled off low: validation accuracy hovered between 43% and 45% from epoch 13 on"),
    "exp3": ("underfitting", "it was still improving when its 10 epochs ended, at 56.6%"),
    "exp4": ("overfitting", "it overfits: validation accuracy peaked at 73.5% (epoch 13) while training accuracy "
                            "climbed to 90.8%"),
    "exp5": ("healthy", "dropout closes exp4's gap: 75.1% on training and 75.6% on validation at the last epoch"),
}
HISTORY_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "seconds", "learning_rate",
                   "val_seconds")  # as results.run_history


@dataclass(frozen=True, eq=False)
class ReferenceRun:
    preset: str  # exp1..exp5
    label: str  # "notebook, exp4"
    note: str  # RECORDED
    history: pd.DataFrame  # results.run_history's columns, one row per epoch; unknown values NaN
    verdict: str  # the diagnosis verdict the curves show (READING)
    reading: str  # the same in words

    @property
    def epochs(self) -> int:
        return len(self.history)

    @property
    def final_val_accuracy(self) -> float:
        return float(self.history["val_accuracy"].iloc[-1])

    @property
    def best_val_accuracy(self) -> float:
        return float(self.history["val_accuracy"].max())

    @property
    def best_epoch(self) -> int:
        return int(self.history.loc[self.history["val_accuracy"].idxmax(), "epoch"])  # the first best

    @property
    def final_accuracy(self) -> float:
        return float(self.history["accuracy"].iloc[-1])


def label(preset: str) -> str:
    return f"notebook, {preset}"


def reference(preset: str) -> ReferenceRun:
    """The notebook's recorded run of a preset; LabError naming the five if it has none."""
    if preset not in VAL_ACCURACY:
        raise LabError(f"the notebook has no recorded curve for {preset!r}: it trained {', '.join(NOTEBOOK_PRESETS)}")
    val, train = VAL_ACCURACY[preset], TRAIN_ACCURACY[preset]
    nan = float("nan")
    history = pd.DataFrame({
        "epoch": range(1, len(val) + 1),
        "loss": nan,
        "accuracy": [nan if v is None else v for v in train],
        "val_loss": nan,
        "val_accuracy": val,
        "seconds": nan,
        "learning_rate": nan,  # never recorded: the preset's setting is not a measurement
        "val_seconds": nan,
    }, columns=list(HISTORY_COLUMNS)).astype({"epoch": "int64", "loss": "float64", "val_loss": "float64", "seconds": "float64",
                                              "val_seconds": "float64",
                                              "learning_rate": "float64"})
    verdict, reading = READING[preset]
    return ReferenceRun(preset, label(preset), RECORDED, history, verdict, reading)


def reference_history(preset: str) -> pd.DataFrame:
    """The notebook's per-epoch record of a preset, in the shape of `results.run_history`."""
    return reference(preset).history


def matching_preset(spec: Mapping | None) -> str | None:
    """The notebook preset a run's spec trains (the same layers, optimizer, learning rate and batch
    size; name, seed and epochs may differ), or None."""
    from cifar_core.spec.validate import parse_spec

    if not isinstance(spec, Mapping):
        return None
    try:
        mine = parse_spec(dict(spec))
    except LabError:
        return None
    for name in NOTEBOOK_PRESETS:
        theirs = parse_spec(get_preset(name))
        same = (mine.layers, mine.optimizer, mine.learning_rate, mine.batch_size) == (
            theirs.layers, theirs.optimizer, theirs.learning_rate, theirs.batch_size)
        if same:
            return name
    return None


_NOT_SETTINGS = ("name", "seed", "description", "sweep_params")  # a run's own, not what it trains


def differences(spec: Mapping, preset: str) -> list[str]:
    """What a run's spec trains otherwise than the notebook's `preset`, in words ("3 epochs against
    the notebook's 20"), every setting but the name, seed and description; [] when nothing differs."""
    from cifar_core.spec.validate import parse_spec

    mine, theirs = parse_spec(dict(spec)).to_dict(), parse_spec(get_preset(preset)).to_dict()
    out = []
    if mine.get("layers") != theirs.get("layers"):
        out.append("another network")
    for key in sorted(theirs.keys() | mine.keys()):
        if key in _NOT_SETTINGS or key == "layers" or mine.get(key) == theirs.get(key):
            continue
        if key == "epochs":
            out.insert(0, f"{mine[key]} epochs against the notebook's {theirs[key]}")
        else:
            out.append(f"{key} {mine.get(key)} against the notebook's {theirs.get(key)}")
    return out


def overlay_caption(preset: str, spec: Mapping | None) -> str:
    """The caption under a run's curves with the notebook's `preset` drawn over them: what the
    dotted curve is and, when the run trains the preset's network, whether anything else differs."""
    text = f"Dotted: {label(preset)}, {RECORDED}"
    if matching_preset(spec) != preset:
        return text + "."
    differ = differences(spec, preset)
    if not differ:
        return text + "; this run trains the same network and settings."
    return text + f"; this run trains the same network, optimizer, learning rate and batch size, but {'; '.join(differ)}."


def reference_ids(presets: Iterable[str]) -> dict[int, str]:
    """Stand-in run ids of the notebook's curves: -1 for exp1 .. -5 for exp5 (no run has a negative id)."""
    ids = {}
    for preset in presets:
        reference(preset)  # LabError for an experiment the notebook did not train
        ids[-(NOTEBOOK_PRESETS.index(preset) + 1)] = label(preset)
    return ids


def curves(presets: Iterable[str], metric: str, alpha: float = 0.0, splits: Iterable[str] = ("train", "val")) -> pd.DataFrame:
    """The notebook's curves of one metric in `analysis.curves.curves`' long frame, to concatenate
    with the runs' curves and overlay; splits the notebook never recorded (its losses) are left out."""
    presets = list(dict.fromkeys(presets))
    ids = reference_ids(presets)
    if not presets:
        return run_curves.curves(pd.DataFrame(columns=["run", *HISTORY_COLUMNS]), metric, alpha, splits)
    history = pd.concat([reference_history(p).assign(run=i) for i, p in zip(ids, presets)], ignore_index=True)
    frame = run_curves.curves(history, metric, alpha, splits, ids)
    known = frame.groupby(["run", "split"])["raw"].transform(lambda s: s.notna().any())
    return frame[known].reset_index(drop=True)


def with_references(runs: pd.DataFrame, presets: Iterable[str], metric: str, alpha: float = 0.0,
                    splits: Iterable[str] = ("train", "val")) -> pd.DataFrame:
    """The runs' `analysis.curves.curves` frame followed by the notebook's curves of `presets`."""
    refs = curves(presets, metric, alpha, splits)
    if refs.empty:
        return runs
    return refs if runs.empty else pd.concat([runs, refs], ignore_index=True)


# ---------------------------------------------------------------- the lab's seeds against the notebook


def _inside(value: float, low: float, high: float) -> bool:
    return low - 5e-5 <= value <= high + 5e-5  # the notebook prints 4 decimals


def spread_sentence(what: str, notebook: float, values: Iterable[float]) -> str:
    """In words: does the notebook's figure fall inside the lab's seed spread (min to max)?"""
    values = [float(v) for v in values if v is not None and not math.isnan(v)]
    if not values:
        return f"No lab run finished, so the notebook's {what} ({notebook:.1%}) has nothing to compare with."
    lo, hi, mean = min(values), max(values), sum(values) / len(values)
    diff = (notebook - mean) * 100
    if len(values) == 1:
        if _inside(notebook, lo, hi):
            return f"The notebook's {what}, {notebook:.1%}, equals the lab's one run ({lo:.1%}); one seed shows no spread."
        side = "above" if notebook > hi else "below"
        return (f"The notebook's {what}, {notebook:.1%}, is {abs(diff):.1f} points {side} the lab's one run ({lo:.1%}); "
                "one seed shows no spread, so this says nothing about chance.")
    seeds = f"the lab's {len(values)} seeds ({lo:.1%} to {hi:.1%}, mean {mean:.1%})"
    if _inside(notebook, lo, hi):
        return f"The notebook's {what}, {notebook:.1%}, falls inside {seeds}."
    side, nearest = ("above", hi) if notebook > hi else ("below", lo)
    return (f"The notebook's {what}, {notebook:.1%}, falls outside {seeds}: {abs(diff):.1f} points {side} the mean "
            f"and {abs(notebook - nearest) * 100:.1f} points {side} the nearest seed.")


def seed_comparison(runs: pd.DataFrame) -> pd.DataFrame:
    """Per notebook experiment, the lab's succeeded runs over seeds against the notebook.

    `runs` has one row per run with `experiment`, `status`, `epochs`, `final_val_acc` and
    `best_val_acc` (as `report.summary_table`). Returns experiment, runs, epochs, notebook_epochs,
    final/best mean, std, min, max, the notebook's final and best, inside flags and sentences."""
    rows = []
    for name in NOTEBOOK_PRESETS:
        mine = runs[(runs["experiment"] == name) & (runs["status"] == "succeeded")]
        if (runs["experiment"] == name).sum() == 0:
            continue
        ref = reference(name)
        row = {"experiment": name, "runs": len(mine), "epochs": sorted(set(mine["epochs"].astype(int))),
               "notebook_epochs": ref.epochs}
        for key, col, nb in (("final", "final_val_acc", ref.final_val_accuracy), ("best", "best_val_acc", ref.best_val_accuracy)):
            values = mine[col].astype("float64").dropna()
            row.update({
                f"{key}_mean": values.mean() if len(values) else math.nan,
                f"{key}_std": values.std(ddof=1) if len(values) > 1 else math.nan,
                f"{key}_min": values.min() if len(values) else math.nan,
                f"{key}_max": values.max() if len(values) else math.nan,
                f"notebook_{key}": nb,
                f"{key}_inside": bool(len(values)) and _inside(nb, values.min(), values.max()),
                f"{key}_sentence": spread_sentence(f"{key} validation accuracy", nb, values),
            })
        if row["epochs"] and row["epochs"] != [ref.epochs]:
            epochs = ", ".join(map(str, row["epochs"]))
            row["final_sentence"] += (f" (Trained {epochs} epoch{'' if epochs == '1' else 's'} here against the "
                                      f"notebook's {ref.epochs}: not the same experiment.)")
        rows.append(row)
    return pd.DataFrame(rows)


def epoch_comparison(history: pd.DataFrame, preset: str) -> pd.DataFrame:
    """Per epoch: the notebook's validation and training accuracy beside the lab's (mean, min and
    max over the runs in `history`, a `results.histories` frame) and the difference, lab minus
    notebook, in accuracy (fractions). Epochs of either side; the other side's cells are NaN."""
    ref = reference_history(preset).set_index("epoch")
    lab = history.groupby("epoch").agg(
        lab_val=("val_accuracy", "mean"), lab_val_min=("val_accuracy", "min"), lab_val_max=("val_accuracy", "max"),
        lab_train=("accuracy", "mean"),
    ) if not history.empty else pd.DataFrame(columns=["lab_val", "lab_val_min", "lab_val_max", "lab_train"])
    out = pd.DataFrame({"notebook_val": ref["val_accuracy"], "notebook_train": ref["accuracy"]}).join(lab, how="outer")
    out = out.astype("float64")
    out["val_diff"] = out["lab_val"] - out["notebook_val"]
    out["train_diff"] = out["lab_train"] - out["notebook_train"]
    out.index.name = "epoch"
    return out.reset_index()[["epoch", "notebook_val", "lab_val", "lab_val_min", "lab_val_max", "val_diff",
                              "notebook_train", "lab_train", "train_diff"]]


def verdict_agreement(preset: str, verdicts: Iterable[str]) -> str:
    """In words: how many of the lab's runs get the verdict the notebook's curves show."""
    verdicts = list(verdicts)
    want, reading = READING[preset]
    agree = sum(v == want for v in verdicts)
    if not verdicts:
        return f"The notebook's reading: {reading}."
    if agree == len(verdicts):
        n = len(verdicts)
        runs = "the run" if n == 1 else "both runs" if n == 2 else f"all {n} runs"
        return f"The notebook's reading: {reading}. The lab's diagnosis agrees on {runs} ({want.replace('_', ' ')})."
    others = ", ".join(sorted({v.replace("_", " ") for v in verdicts if v != want}))
    return (f"The notebook's reading: {reading}. The lab's diagnosis agrees on {agree} of {len(verdicts)} runs "
            f"({want.replace('_', ' ')}); the others read {others}.")
