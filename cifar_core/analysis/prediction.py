"""Predictions of the lab's own models: classify images with one or several finished runs, and
read the test-set predictions each run stored when it finished (for error analysis and for
comparing two runs on the same images).

A `.keras` file can carry code, so only models this lab trained are ever loaded: the
`model.keras` in `<lab home>/runs/<run id>/` of a run the store records as succeeded, resolved
through the store (never a path or a file a user hands in), not a symlink, and loaded with Keras's
safe mode on. Loaded models are cached per process, keyed by file and modification time.
"""

from __future__ import annotations

import math
import sqlite3
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cifar_core import config
from cifar_core.numbers import percent, points
from cifar_core.jobs import queue, store
from cifar_core.errors import DataError, LabError, NotFound

MODEL_FILE = "model.keras"
PREDICTIONS_FILE = "predictions.npz"
MODEL_CACHE_SIZE = 6  # models kept loaded in a process
ONLY_OURS = (
    "only models this lab trained are loaded (the model.keras of a succeeded run in {runs}); "
    "submit the experiment to train it here"
)


@dataclass(frozen=True)
class TrainedModel:
    run: int
    name: str
    path: Path  # <lab home>/runs/<run>/model.keras, checked
    data_source: str  # what it trained on; its test set is the one its stored predictions cover
    tta_flip: bool  # it is scored with flip test-time augmentation, so predictions here use it too
    tta_shift: int  # likewise for shifted views (0: none)


def _refuse(what: str) -> LabError:
    return LabError(f"refusing to load {what}: {ONLY_OURS.format(runs=config.runs_dir())}")


def trained_model(conn: sqlite3.Connection, run_id: int) -> TrainedModel:
    """The checked model file of a succeeded run; LabError saying why otherwise."""
    try:
        job = queue.get_job(conn, int(run_id))
    except NotFound:
        raise NotFound(f"no run {run_id}; `python -m cifar_core runs` lists the runs") from None
    if job.state != queue.SUCCEEDED:
        raise LabError(f"run {run_id} is {job.state}, not succeeded; only a run that finished training has a model")
    row = store.run_row(conn, job.id)
    runs = config.runs_dir().resolve()
    expected = runs / str(job.id)
    if row is None or Path(row["artifacts_dir"]).expanduser().resolve() != expected:
        found = row["artifacts_dir"] if row else "nothing"
        raise _refuse(f"run {run_id}'s files (the store says {found}, outside {expected})")
    path = expected / MODEL_FILE
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise _refuse(f"{path} (not a regular file)")
    if not path.is_file():
        raise DataError(f"run {run_id} has no {MODEL_FILE} in {expected}; its files were deleted, train it again")
    return TrainedModel(job.id, job.name, path, job.data_source, bool(job.spec.get("tta_flip", False)),
                        int(job.spec.get("tta_shift", 0)))


_models: OrderedDict[tuple, object] = OrderedDict()
_lock = threading.Lock()


def load_trained_model(model: TrainedModel):
    """The Keras model of a checked run (`trained_model`), loaded once per process."""
    import keras

    from cifar_core.train.models import custom_objects, load_refusal

    st = model.path.stat()
    key = (str(model.path), st.st_mtime_ns, st.st_size)
    with _lock:
        if key in _models:
            _models.move_to_end(key)
            return _models[key]
        try:
            # the lab's own layers (ResidualBlock, Whitening, ...) are registered when first used:
            # name them, or a fresh process cannot load a model holding them
            loaded = keras.saving.load_model(model.path, compile=False, safe_mode=True, custom_objects=custom_objects())
        except (OSError, ValueError, TypeError) as exc:
            raise DataError(f"run {model.run}'s {load_refusal(model.path, exc)}") from exc
        _models[key] = loaded
        while len(_models) > MODEL_CACHE_SIZE:
            _models.popitem(last=False)
        return loaded


def _images(images) -> np.ndarray:
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[-1] != 3 or x.dtype != np.uint8:
        raise DataError(f"images are {x.dtype} {x.shape}; pass uint8 RGB images shaped (N, 32, 32, 3) or (32, 32, 3)")
    return x


def predict_run(conn: sqlite3.Connection, run_id: int, images) -> np.ndarray:
    """Class probabilities (N, classes) of one run's model on uint8 images (with its flip TTA if
    it was scored that way, so a test image gets the probabilities the run stored for it)."""
    from cifar_core.train.augment import predict_probs

    info = trained_model(conn, run_id)
    model = load_trained_model(info)
    x = _images(images)
    want = tuple(model.input_shape[1:])
    if tuple(x.shape[1:]) != want:
        raise DataError(f"run {run_id}'s model takes images shaped {want}, got {tuple(x.shape[1:])}; resize them first")
    return predict_probs(model, x, batch_size=256, tta_flip=info.tta_flip, tta_shift=info.tta_shift)


def top_classes(probs, class_names: tuple[str, ...] | list[str], k: int = 5) -> pd.DataFrame:
    """The k most probable classes of one image's probabilities: rank, class, probability."""
    p = np.asarray(probs, dtype=np.float64).reshape(-1)
    if p.size != len(class_names):
        raise DataError(f"{p.size} probabilities but {len(class_names)} class names; use the run's own data source")
    order = np.argsort(-p, kind="stable")[: max(1, k)]
    return pd.DataFrame({"rank": np.arange(1, len(order) + 1), "class": [class_names[i] for i in order],
                         "probability": p[order]})


def predict_image(conn: sqlite3.Connection, run_ids: list[int], image, class_names, k: int = 5,
                  labels: dict[int, str] | None = None) -> pd.DataFrame:
    """Top-k classes of one 32x32 image for each run, long: run, label, rank, class, probability."""
    if not run_ids:
        raise LabError("no model chosen; pick at least one finished run")
    parts = []
    for run in run_ids:
        probs = predict_run(conn, int(run), image)[0]
        top = top_classes(probs, class_names, k)
        parts.append(top.assign(run=int(run), label=(labels or {}).get(int(run), f"#{int(run)}")))
    return pd.concat(parts, ignore_index=True)[["run", "label", "rank", "class", "probability"]]


# ---------------------------------------------------------------- stored test predictions


@dataclass(frozen=True, eq=False)
class StoredPredictions:
    run: int
    probs: np.ndarray  # float32 (N, classes); with the run's test-time augmentation already applied
    y_true: np.ndarray  # int64 (N,)
    y_pred: np.ndarray | None = None  # the classes as scored (runs before it was stored: None, from probs)

    @property
    def pred(self) -> np.ndarray:
        return self.y_pred if self.y_pred is not None else self.probs.argmax(axis=1)

    @property
    def confidence(self) -> np.ndarray:
        return self.probs.max(axis=1)

    @property
    def correct(self) -> np.ndarray:
        return self.pred == self.y_true

    @property
    def accuracy(self) -> float:
        return float(self.correct.mean()) if self.y_true.size else float("nan")

    @property
    def num_classes(self) -> int:
        return int(self.probs.shape[1])


_stored: OrderedDict[tuple, StoredPredictions] = OrderedDict()


def stored_predictions(conn: sqlite3.Connection, run_id: int) -> StoredPredictions:
    """The test-set probabilities a succeeded run saved when it finished (computed once per run)."""
    job = queue.get_job(conn, int(run_id))
    if job.state != queue.SUCCEEDED:
        raise LabError(f"run {run_id} is {job.state}, not succeeded; only a finished run has test predictions")
    row = store.run_row(conn, job.id)
    path = Path(row["artifacts_dir"]) / PREDICTIONS_FILE
    if not path.is_file():
        raise DataError(f"run {run_id} has no {PREDICTIONS_FILE} in {path.parent}; its files were deleted")
    st = path.stat()
    key = (str(path), st.st_mtime_ns, st.st_size)
    with _lock:
        if key in _stored:
            return _stored[key]
    try:
        with np.load(path, allow_pickle=False) as z:
            probs, y = z["probs"].astype(np.float32), z["y_true"].astype(np.int64).reshape(-1)
            pred = z["y_pred"].astype(np.int64).reshape(-1) if "y_pred" in z.files else None
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"run {run_id}'s {PREDICTIONS_FILE} is unreadable ({exc}); train it again") from exc
    if probs.ndim != 2 or len(probs) != len(y) or (pred is not None and len(pred) != len(y)):
        raise DataError(f"run {run_id}'s {PREDICTIONS_FILE} holds probs {probs.shape} for {len(y)} labels")
    stored = StoredPredictions(job.id, probs, y, pred)
    with _lock:
        _stored[key] = stored
        while len(_stored) > 32:
            _stored.popitem(last=False)
    return stored


def check_test_set(stored: StoredPredictions, y_test: np.ndarray) -> None:
    """Raise if the dataset's test labels are not the ones the run was scored on."""
    if len(y_test) != len(stored.y_true) or not np.array_equal(np.asarray(y_test), stored.y_true):
        raise DataError(
            f"run {stored.run} was scored on {len(stored.y_true)} test images that do not match this data source's "
            f"{len(y_test)}; open it with the data it was trained on"
        )


@dataclass(frozen=True, eq=False)
class ErrorAnalysis:
    run: int
    accuracy: float
    per_class: pd.DataFrame  # class, images, correct, accuracy
    confusion: np.ndarray  # counts, row = true class, column = predicted
    row_percent: np.ndarray  # each row as % of that true class
    class_names: tuple[str, ...]


def error_analysis(stored: StoredPredictions, class_names) -> ErrorAnalysis:
    """Per-class accuracy and the confusion matrix (counts and row percentages) of one run."""
    from cifar_core.analysis.stats import confusion_matrix, per_class_accuracy, row_percentages

    names = _names(stored, class_names)
    cm = confusion_matrix(stored.y_true, stored.pred, stored.num_classes)
    per_class = pd.DataFrame({
        "class": names, "images": cm.sum(axis=1), "correct": np.diag(cm),
        "accuracy": per_class_accuracy(stored.y_true, stored.pred, stored.num_classes),
    })
    return ErrorAnalysis(stored.run, stored.accuracy, per_class, cm, row_percentages(cm), names)


def _names(stored: StoredPredictions, class_names) -> tuple[str, ...]:
    names = tuple(str(c) for c in class_names)
    if len(names) != stored.num_classes:
        raise DataError(f"run {stored.run} predicts {stored.num_classes} classes but {len(names)} names were given")
    return names


def misclassified(stored: StoredPredictions, class_names, true_class: int | None = None,
                  pred_class: int | None = None, limit: int = 48) -> pd.DataFrame:
    """Wrong test predictions, most confident first: index, true, pred, confidence, true_name, pred_name."""
    from cifar_core.analysis.stats import misclassified as wrong

    names = _names(stored, class_names)
    frame = wrong(stored.y_true, stored.pred, stored.confidence, true_class, pred_class, limit)
    return frame.assign(true_name=[names[i] for i in frame["true"]], pred_name=[names[i] for i in frame["pred"]])


MIN_SEEDS = 3  # finished seeds of a configuration needed before its seed spread means anything


@dataclass(frozen=True)
class SeedPair:
    """Two compared runs that are seeds of one configuration (`identity.config_key`), and the
    spread of test accuracy over every finished seed of that configuration."""

    seed_a: int
    seed_b: int
    runs: int  # succeeded runs of the configuration, the two compared ones included
    std: float  # standard deviation of their test accuracies (fraction; NaN for fewer than 2)
    low: float  # lowest and highest test accuracy
    high: float

    @property
    def typical_gap(self) -> float:
        """How far apart two seeds' accuracies typically fall: about 95% of the differences of two
        draws with standard deviation `std` lie within 2·√2·std."""
        return 2 * math.sqrt(2) * self.std


def seed_pair(board: pd.DataFrame, run_a: int, run_b: int) -> SeedPair | None:
    """From the leaderboard (`results.leaderboard`): the seeds and seed spread of runs a and b when
    they are runs of one configuration, None when their configurations differ."""
    from cifar_core.jobs.results import group_summary

    rows = board.set_index("run")
    missing = [r for r in (run_a, run_b) if r not in rows.index]
    if missing:
        raise NotFound(f"no run {missing[0]} on the leaderboard; `python -m cifar_core runs` lists the runs")
    key = rows.at[run_a, "config"]
    if rows.at[run_b, "config"] != key:
        return None
    group = group_summary(board[board["config"] == key])
    if group.empty:
        raise LabError(f"runs {run_a} and {run_b} have not both succeeded; compare finished runs")
    g = group.iloc[0]
    return SeedPair(int(rows.at[run_a, "seed"]), int(rows.at[run_b, "seed"]), int(g["runs"]),
                    float(g["test_accuracy_std"]), float(g["test_accuracy_min"]), float(g["test_accuracy_max"]))


@dataclass(frozen=True, eq=False)
class RunComparison:
    run_a: int
    run_b: int
    accuracy_a: float
    accuracy_b: float
    per_class: pd.DataFrame  # class, accuracy_a, accuracy_b, difference (b - a)
    confusion_diff: np.ndarray  # confusion(b) - confusion(a), counts
    a_right_b_wrong: np.ndarray  # test indices
    b_right_a_wrong: np.ndarray
    mcnemar_p: float
    significant: bool  # McNemar's, for these two trained models
    bootstrap: tuple[float, float, float]  # accuracy b - a, and its 95% interval
    verdict: str  # in words
    seeds: SeedPair | None = None  # set when the two are seeds of one configuration

    @property
    def decisive(self) -> bool:
        """Whether one of the two is the better model: a significant difference between two
        configurations (two seeds of one configuration never make one the better)."""
        return self.significant and self.seeds is None


def compare_runs(a: StoredPredictions, b: StoredPredictions, class_names, alpha: float = 0.05,
                 seeds: SeedPair | None = None) -> RunComparison:
    """Two runs on the same test images: per-class and confusion differences, the images only one
    gets right, McNemar's test and a paired bootstrap interval, stated in words; for two seeds of
    one configuration (`seeds`, from `seed_pair`), set against that configuration's seed spread."""
    from cifar_core.analysis.stats import compare_predictions, paired_bootstrap

    names = _names(a, class_names)
    if not np.array_equal(a.y_true, b.y_true):
        raise DataError(f"runs {a.run} and {b.run} were scored on different test sets; compare runs of one data source")
    if a.num_classes != b.num_classes:
        raise DataError(f"run {a.run} predicts {a.num_classes} classes and run {b.run} {b.num_classes}; not comparable")
    c = compare_predictions(a.y_true, a.pred, b.pred, a.num_classes, alpha=alpha)
    boot = paired_bootstrap(a.correct, b.correct)
    per_class = pd.DataFrame({"class": names, "accuracy_a": c.per_class_a, "accuracy_b": c.per_class_b,
                              "difference": c.per_class_diff})
    words = (_verdict(a.run, b.run, c, boot, len(a.y_true), alpha) if seeds is None
             else _seed_verdict(a.run, b.run, c, boot, len(a.y_true), alpha, seeds))
    return RunComparison(
        a.run, b.run, c.accuracy_a, c.accuracy_b, per_class, c.confusion_diff, c.a_right_b_wrong, c.b_right_a_wrong,
        c.mcnemar.p_value, c.mcnemar.significant, boot, words, seeds,
    )


def _p_text(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def _interval(run_a: int, run_b: int, boot: tuple[float, float, float]) -> str:
    diff, low, high = (points(v, signed=True) for v in boot)
    return f"A paired bootstrap puts #{run_b} minus #{run_a} at {diff} points (95% interval {low} to {high})."


def _verdict(run_a: int, run_b: int, c, boot: tuple[float, float, float], n: int, alpha: float) -> str:
    diff = boot[0] * 100
    p_text = _p_text(c.mcnemar.p_value)
    if abs(diff) < 1e-9:
        lead = f"Runs #{run_a} and #{run_b} are equally accurate ({percent(c.accuracy_a)}) on the same {n:,} test images."
    else:
        hi, lo = (run_b, run_a) if diff > 0 else (run_a, run_b)
        lead = (f"Run #{hi} is {points(abs(boot[0]))} points more accurate than run #{lo} "
                f"({percent(max(c.accuracy_a, c.accuracy_b))} vs {percent(min(c.accuracy_a, c.accuracy_b))}) "
                f"on the same {n:,} test images.")
    detail = (f"#{run_a} alone is right on {c.mcnemar.n10:,} images and #{run_b} alone on {c.mcnemar.n01:,}.")
    if c.mcnemar.significant:
        better = run_b if c.mcnemar.n01 > c.mcnemar.n10 else run_a
        judgement = (f"McNemar's test finds the difference significant ({p_text}, alpha {alpha:g}): run #{better} is "
                     "the better model on this test set.")
    else:
        judgement = (f"McNemar's test does not find the difference significant ({p_text}, alpha {alpha:g}): on this "
                     "test set the two cannot be told apart.")
    return " ".join([lead, detail, judgement, _interval(run_a, run_b, boot)])


def _seed_verdict(run_a: int, run_b: int, c, boot: tuple[float, float, float], n: int, alpha: float,
                  seeds: SeedPair) -> str:
    """Two seeds of one configuration: what differs is the seed, so the question is whether the
    difference is larger than seeds of that configuration usually differ, not which model is better."""
    diff = boot[0] * 100
    lead = (f"Runs #{run_a} and #{run_b} are two seeds ({seeds.seed_a} and {seeds.seed_b}) of one configuration: "
            "the difference is seed noise unless it exceeds the seed spread.")
    result = (f"Seed {seeds.seed_b} (#{run_b}) scores {points(boot[0], signed=True)} points against seed "
              f"{seeds.seed_a} (#{run_a}) ({percent(c.accuracy_b)} vs {percent(c.accuracy_a)}) on the same {n:,} test images; "
              f"#{run_a} alone is right on {c.mcnemar.n10:,} images and #{run_b} alone on {c.mcnemar.n01:,}.")
    if seeds.runs < MIN_SEEDS:
        spread = (f"Only {seeds.runs} seeds of this configuration have finished: too few to know its seed spread "
                  f"({MIN_SEEDS} are needed); train more seeds (e.g. --repeats {MIN_SEEDS}) before reading anything "
                  "into the difference.")
    else:
        gap = seeds.typical_gap * 100
        spread = (f"Its {seeds.runs} finished seeds spread {points(seeds.std)} points (std; test accuracy "
                  f"{percent(seeds.low)} to {percent(seeds.high)}), so two seeds typically differ by up to "
                  f"{points(seeds.typical_gap)} points "
                  "(2·√2·std): ")
        spread += ("this difference is within that, seed noise: neither seed makes the configuration better."
                   if abs(diff) <= gap else
                   "this difference is larger; check what else differed between the two runs (code, data, a resumed "
                   "checkpoint) before trusting it.")
    found = "finds the difference significant" if c.mcnemar.significant else "does not find the difference significant"
    mcnemar = (f"McNemar's test, for these two trained models, not the configuration, {found} "
               f"({_p_text(c.mcnemar.p_value)}, alpha {alpha:g}).")
    return " ".join([lead, result, spread, mcnemar, _interval(run_a, run_b, boot)])


def disagreements(a: StoredPredictions, b: StoredPredictions, class_names, right: str = "a",
                  limit: int = 24) -> pd.DataFrame:
    """Test images one run gets right and the other wrong (`right` = "a" or "b"), the wrong run's
    most confident mistakes first: index, true_name, pred_a_name, pred_b_name, wrong_confidence."""
    if right not in ("a", "b"):
        raise LabError(f"right={right!r} must be 'a' or 'b' (the run that is right)")
    names = _names(a, class_names)
    good, bad = (a, b) if right == "a" else (b, a)
    idx = np.flatnonzero(good.correct & ~bad.correct)
    conf = bad.confidence[idx]
    idx = idx[np.argsort(-conf, kind="stable")][: max(limit, 0)]
    return pd.DataFrame({
        "index": idx, "true_name": [names[i] for i in a.y_true[idx]], "pred_a_name": [names[i] for i in a.pred[idx]],
        "pred_b_name": [names[i] for i in b.pred[idx]], "wrong_confidence": bad.confidence[idx],
    })
