"""Error analysis and significance tests, checked against arithmetic done by hand."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from cifar_core.errors import DataError
from cifar_core.analysis.stats import (
    compare_predictions,
    confusion_matrix,
    mcnemar,
    misclassified,
    paired_bootstrap,
    per_class_accuracy,
    row_percentages,
)

Y = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 1])
P = np.array([0, 1, 0, 1, 2, 2, 2, 0, 2, 1])


def paired_flags(n_both: int, n_a_only: int, n_b_only: int, n_neither: int) -> tuple[np.ndarray, np.ndarray]:
    a = [True] * n_both + [True] * n_a_only + [False] * n_b_only + [False] * n_neither
    b = [True] * n_both + [False] * n_a_only + [True] * n_b_only + [False] * n_neither
    return np.array(a), np.array(b)


def test_confusion_matrix_and_percentages():
    cm = confusion_matrix(Y, P, 3)
    assert cm.tolist() == [[2, 1, 0], [0, 2, 1], [1, 0, 3]]
    pct = row_percentages(cm)
    assert pct[2].tolist() == [25.0, 0.0, 75.0]
    assert row_percentages(np.zeros((2, 2), dtype=int)).tolist() == [[0.0, 0.0], [0.0, 0.0]]


def test_per_class_accuracy_with_an_empty_class():
    acc = per_class_accuracy(Y, P, 4)
    assert acc[:3] == pytest.approx([2 / 3, 2 / 3, 3 / 4])
    assert math.isnan(acc[3])


def test_labels_are_checked():
    with pytest.raises(DataError, match=r"y_pred holds class 7, outside 0\.\.2"):
        confusion_matrix(Y, np.full(10, 7), 3)
    with pytest.raises(DataError, match="y_true has 10 labels but y_pred has 3"):
        confusion_matrix(Y, [0, 1, 2], 3)
    # a CIFAR-style (N, 1) label column is fine
    assert confusion_matrix(Y.reshape(-1, 1), P, 3).sum() == 10


def test_misclassified_sorted_and_filtered():
    conf = np.array([0.9, 0.8, 0.7, 0.6, 0.95, 0.5, 0.4, 0.99, 0.3, 0.2])
    df = misclassified(Y, P, conf)
    assert df.columns.tolist() == ["index", "true", "pred", "confidence"]
    assert df["index"].tolist() == [7, 4, 1]  # wrong rows, most confident first
    assert misclassified(Y, P, conf, true_class=1)["index"].tolist() == [4]
    assert misclassified(Y, P, conf, pred_class=0)["index"].tolist() == [7]
    assert len(misclassified(Y, P, conf, limit=2)) == 2


def test_mcnemar_exact_hand_computed():
    # n01 = 3 (B right, A wrong), n10 = 9 (A right, B wrong), 12 discordant < 25 -> exact.
    # Under H0 the 3 is Binomial(12, 1/2): P(X <= 3) = (C(12,0)+C(12,1)+C(12,2)+C(12,3)) / 2^12
    # = (1 + 12 + 66 + 220) / 4096 = 299 / 4096; two-sided p = 2 * 299 / 4096 = 598 / 4096 = 0.14600.
    a, b = paired_flags(n_both=50, n_a_only=9, n_b_only=3, n_neither=8)
    r = mcnemar(a, b)
    assert (r.n01, r.n10, r.method) == (3, 9, "exact")
    assert r.p_value == pytest.approx(598 / 4096, abs=1e-12)
    assert r.statistic == 3 and not r.significant
    assert r.statement == (
        "Run A is right on 9 images where B is wrong, B on 3 where A is wrong;"
        " the difference is not significant (McNemar exact p = 0.146)."
    )


def test_mcnemar_chi_square_hand_computed():
    # n01 = 20, n10 = 40, 60 discordant >= 25 -> chi-square with continuity correction:
    # (|20 - 40| - 1)^2 / 60 = 361 / 60 = 6.01667; for 1 degree of freedom the upper tail is
    # erfc(sqrt(x / 2)) = erfc(1.73445) = 0.014171.
    a, b = paired_flags(n_both=100, n_a_only=40, n_b_only=20, n_neither=5)
    r = mcnemar(a, b, name_a="#3", name_b="#5")
    assert (r.n01, r.n10) == (20, 40)
    assert r.method == "chi-square with continuity correction"
    assert r.statistic == pytest.approx(361 / 60)
    assert r.p_value == pytest.approx(math.erfc(math.sqrt(361 / 60 / 2)), rel=1e-9)
    assert r.p_value == pytest.approx(0.014171, abs=1e-6)
    assert r.significant
    assert r.statement.endswith("significant at 0.05 (McNemar chi-square p = 0.014): run #3 is better.")
    assert not mcnemar(a, b, alpha=0.01).significant


def test_mcnemar_identical_runs_and_bad_input():
    a, _ = paired_flags(10, 0, 0, 5)
    r = mcnemar(a, a)
    assert (r.n01, r.n10, r.p_value, r.significant) == (0, 0, 1.0, False)
    assert "right on 0 images" in r.statement
    with pytest.raises(DataError, match="correct_a has 15 images but correct_b has 3"):
        mcnemar(a, a[:3])
    with pytest.raises(DataError, match="must be booleans"):
        mcnemar(np.array([0, 2, 1]), np.array([1, 1, 1]))


def test_paired_bootstrap_interval():
    a, b = paired_flags(n_both=600, n_a_only=40, n_b_only=80, n_neither=280)
    mean, low, high = paired_bootstrap(a, b, n_boot=2000, seed=0)
    assert mean == pytest.approx(0.04)  # (80 - 40) / 1000
    # The standard error of the mean of d is sqrt((0.12 - 0.04^2) / 1000) = 0.01073, so the
    # 95% interval should be about 0.04 +/- 0.021.
    assert low == pytest.approx(0.04 - 1.96 * 0.01073, abs=0.004)
    assert high == pytest.approx(0.04 + 1.96 * 0.01073, abs=0.004)
    assert paired_bootstrap(a, b, seed=0) == (mean, low, high)  # seeded
    same = paired_bootstrap(a, a)
    assert same == (0.0, 0.0, 0.0)


def test_compare_predictions():
    y = np.array([0, 0, 1, 1, 2, 2])
    pa = np.array([0, 1, 1, 1, 0, 2])  # right on 0, 2, 3, 5
    pb = np.array([0, 0, 1, 2, 2, 2])  # right on 0, 1, 2, 4, 5
    c = compare_predictions(y, pa, pb, 3)
    assert (c.accuracy_a, c.accuracy_b) == (pytest.approx(4 / 6), pytest.approx(5 / 6))
    assert c.per_class_diff.tolist() == pytest.approx([0.5, -0.5, 0.5])
    assert c.a_right_b_wrong.tolist() == [3]
    assert c.b_right_a_wrong.tolist() == [1, 4]
    assert c.confusion_diff.sum() == 0
    assert c.confusion_diff[0].tolist() == [1, -1, 0]  # B moves one class-0 image from col 1 to col 0
    assert (c.mcnemar.n01, c.mcnemar.n10) == (2, 1)
    json.dumps(c.to_dict())
