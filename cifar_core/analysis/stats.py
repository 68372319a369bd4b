"""Error analysis of a model's predictions, and whether one run is really better than another.

Labels are integer class ids 0..num_classes-1 (a CIFAR-style (N, 1) label column is accepted).
Comparisons are paired: both runs predict the same test images, so McNemar's test and a paired
bootstrap use the images where the two runs disagree, which is far more sensitive than comparing
two accuracies as if they came from different samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from cifar_core.errors import DataError

EXACT_BELOW = 25  # discordant pairs under which McNemar uses the exact binomial test


@dataclass(frozen=True)
class McNemarResult:
    n01: int  # images A gets wrong and B gets right
    n10: int  # images A gets right and B gets wrong
    statistic: float  # min(n01, n10) for the exact test, the chi-square value otherwise
    p_value: float
    method: str  # "exact" or "chi-square with continuity correction"
    alpha: float
    significant: bool
    statement: str  # one sentence in words

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True, eq=False)
class Comparison:
    accuracy_a: float
    accuracy_b: float
    per_class_a: np.ndarray  # (num_classes,) accuracy of A on each true class
    per_class_b: np.ndarray
    per_class_diff: np.ndarray  # per_class_b - per_class_a
    confusion_diff: np.ndarray  # confusion_matrix(b) - confusion_matrix(a), counts
    a_right_b_wrong: np.ndarray  # indices of images only A classifies correctly
    b_right_a_wrong: np.ndarray  # indices of images only B classifies correctly
    mcnemar: McNemarResult

    def to_dict(self) -> dict:
        out = {}
        for key in self.__dataclass_fields__:
            value = getattr(self, key)
            out[key] = value.to_dict() if key == "mcnemar" else value.tolist() if isinstance(value, np.ndarray) else value
        return out


def _labels(y, num_classes: int, name: str) -> np.ndarray:
    arr = np.asarray(y)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise DataError(f"{name} has shape {arr.shape}; pass one integer class id per image, shape (N,)")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.mod(arr, 1) == 0):
            raise DataError(f"{name} holds non-integer values such as {arr[np.mod(arr, 1) != 0][0]!r}; pass class ids")
        arr = arr.astype(np.int64)
    if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
        bad = arr[(arr < 0) | (arr >= num_classes)][0]
        raise DataError(f"{name} holds class {bad}, outside 0..{num_classes - 1}; check num_classes={num_classes}")
    return arr.astype(np.int64)


def _pair(y_true, y_pred, num_classes: int, pred_name: str = "y_pred") -> tuple[np.ndarray, np.ndarray]:
    t = _labels(y_true, num_classes, "y_true")
    p = _labels(y_pred, num_classes, pred_name)
    if t.shape != p.shape:
        raise DataError(f"y_true has {t.size} labels but {pred_name} has {p.size}; predict the same images")
    return t, p


def confusion_matrix(y_true, y_pred, num_classes: int) -> np.ndarray:
    """Counts: row = true class, column = predicted class."""
    t, p = _pair(y_true, y_pred, num_classes)
    return np.bincount(t * num_classes + p, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def row_percentages(cm: np.ndarray) -> np.ndarray:
    """Each row of a confusion matrix as percentages of that true class (rows with no images are 0)."""
    cm = np.asarray(cm, dtype=np.float64)
    totals = cm.sum(axis=1, keepdims=True)
    return np.divide(cm * 100.0, totals, out=np.zeros_like(cm), where=totals > 0)


def in_b_favour(confusion_diff) -> np.ndarray:
    """A confusion-difference matrix (counts of B minus counts of A) signed so that positive always
    means in B's favour: on the diagonal as it is (B gets that class right more often), off it
    negated (B makes that mistake less often). One sign, one meaning, for colouring the matrix."""
    d = np.asarray(confusion_diff)
    if d.ndim != 2 or d.shape[0] != d.shape[1]:
        raise DataError(f"a confusion difference is a square matrix, got shape {d.shape}")
    return np.where(np.eye(d.shape[0], dtype=bool), d, -d)


def per_class_accuracy(y_true, y_pred, num_classes: int) -> np.ndarray:
    """Accuracy on the images of each true class (recall); NaN for a class with no images."""
    cm = confusion_matrix(y_true, y_pred, num_classes)
    totals = cm.sum(axis=1)
    return np.divide(np.diag(cm), totals, out=np.full(num_classes, np.nan), where=totals > 0)


def misclassified(
    y_true, y_pred, confidence, true_class: int | None = None, pred_class: int | None = None, limit: int = 100
) -> pd.DataFrame:
    """The wrong predictions, most confident first: columns index, true, pred, confidence."""
    t = np.asarray(y_true).reshape(-1).astype(np.int64)
    p = np.asarray(y_pred).reshape(-1).astype(np.int64)
    conf = np.asarray(confidence, dtype=np.float64).reshape(-1)
    if not t.size == p.size == conf.size:
        raise DataError(f"y_true, y_pred and confidence have {t.size}, {p.size} and {conf.size} rows; they must match")
    mask = t != p
    if true_class is not None:
        mask &= t == true_class
    if pred_class is not None:
        mask &= p == pred_class
    idx = np.flatnonzero(mask)
    order = idx[np.argsort(-conf[idx], kind="stable")][: max(limit, 0)]
    return pd.DataFrame({"index": order, "true": t[order], "pred": p[order], "confidence": conf[order]})


def _bools(x, name: str) -> np.ndarray:
    arr = np.asarray(x).reshape(-1)
    if arr.dtype != bool:
        if arr.size and not np.isin(arr, (0, 1)).all():
            raise DataError(f"{name} must be booleans (is each prediction right?), got values like {arr[:3]!r}")
        arr = arr.astype(bool)
    return arr


def _fmt_p(p: float) -> str:
    return "< 0.001" if p < 0.001 else "= " + f"{p:.3f}".rstrip("0").rstrip(".")


def _images(n: int) -> str:
    return f"{n} image{'s' if n != 1 else ''}"


def mcnemar(correct_a, correct_b, alpha: float = 0.05, name_a: str = "A", name_b: str = "B") -> McNemarResult:
    """McNemar's test on paired right/wrong flags: exact binomial below 25 discordant pairs,
    chi-square with continuity correction from 25 up."""
    from scipy import stats  # lazily: scipy.stats takes seconds to import, pages import this module

    a, b = _bools(correct_a, "correct_a"), _bools(correct_b, "correct_b")
    if a.shape != b.shape:
        raise DataError(f"correct_a has {a.size} images but correct_b has {b.size}; compare on the same test set")
    n01 = int(np.sum(~a & b))
    n10 = int(np.sum(a & ~b))
    n = n01 + n10
    if n < EXACT_BELOW:
        method = "exact"
        statistic = float(min(n01, n10))
        p = float(stats.binomtest(n01, n, 0.5).pvalue) if n else 1.0
    else:
        method = "chi-square with continuity correction"
        statistic = (abs(n01 - n10) - 1) ** 2 / n
        p = float(stats.chi2.sf(statistic, df=1))
    significant = p < alpha
    short = "exact" if method == "exact" else "chi-square"
    verdict = f"significant at {alpha:g}" if significant else "not significant"
    statement = (
        f"Run {name_a} is right on {_images(n10)} where {name_b} is wrong, {name_b} on {n01} where {name_a} is wrong;"
        f" the difference is {verdict} (McNemar {short} p {_fmt_p(p)})."
    )
    if significant:
        statement = statement[:-1] + f": run {name_a if n10 > n01 else name_b} is better."
    return McNemarResult(n01, n10, float(statistic), p, method, alpha, significant, statement)


def paired_bootstrap(correct_a, correct_b, n_boot: int = 2000, seed: int = 0, ci: float = 0.95) -> tuple[float, float, float]:
    """Accuracy of B minus accuracy of A, with a percentile bootstrap interval over images.

    Each image contributes d = b - a in {-1, 0, +1}; resampling N images with replacement only
    changes how many of each value are drawn, so the resamples are drawn as multinomial counts
    (exactly the same distribution as resampling indices, in O(n_boot) memory).
    """
    a, b = _bools(correct_a, "correct_a"), _bools(correct_b, "correct_b")
    if a.shape != b.shape or a.size == 0:
        raise DataError(f"correct_a and correct_b have {a.size} and {b.size} images; need the same, non-zero count")
    d = b.astype(np.int64) - a.astype(np.int64)
    n = d.size
    probs = np.array([np.sum(d == -1), np.sum(d == 0), np.sum(d == 1)]) / n
    counts = np.random.default_rng(seed).multinomial(n, probs, size=n_boot)
    means = (counts[:, 2] - counts[:, 0]) / n
    tail = (1 - ci) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(d.mean()), float(low), float(high)


def compare_predictions(y_true, pred_a, pred_b, num_classes: int, alpha: float = 0.05) -> Comparison:
    """Where two runs differ on the same test images, and whether the difference is significant."""
    t, a = _pair(y_true, pred_a, num_classes, "pred_a")
    _, b = _pair(y_true, pred_b, num_classes, "pred_b")
    right_a, right_b = a == t, b == t
    acc_a = per_class_accuracy(t, a, num_classes)
    acc_b = per_class_accuracy(t, b, num_classes)
    return Comparison(
        accuracy_a=float(right_a.mean()) if t.size else float("nan"),
        accuracy_b=float(right_b.mean()) if t.size else float("nan"),
        per_class_a=acc_a,
        per_class_b=acc_b,
        per_class_diff=acc_b - acc_a,
        confusion_diff=confusion_matrix(t, b, num_classes) - confusion_matrix(t, a, num_classes),
        a_right_b_wrong=np.flatnonzero(right_a & ~right_b),
        b_right_a_wrong=np.flatnonzero(right_b & ~right_a),
        mcnemar=mcnemar(right_a, right_b, alpha=alpha),
    )
