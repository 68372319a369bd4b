"""The written recommendation of a model choice: what the recommended candidate scores and costs,
why the ranking rule picked it, what it gives up, and which runs McNemar does not separate from it.
Markdown from the ranked candidates; the rule itself lives in `analysis.choice`."""

from __future__ import annotations

import pandas as pd

from cifar_core.numbers import percent as _pct
from cifar_core.numbers import points as _points


def _ms(v) -> str:
    return "not measured" if v is None or v != v else f"{v:.2f} ms"


def _bytes(n) -> str:
    if n is None or n != n:
        return "unknown size"
    n = float(n)
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.0f} KB"


def _duration(s) -> str:
    if s is None or s != s:
        return "unknown time"
    s = float(s)
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min" if s < 7200 else f"{s / 3600:.1f} h"


def _macs(n) -> str:
    if n is None or n != n:
        return "multiply-adds not counted"
    n = float(n)
    return f"{n / 1e6:.1f} M multiply-adds per image" if n >= 1e5 else f"{n:,.0f} multiply-adds per image"


def _tie_text(pick) -> str:
    """Says when the pick's latency ties with other eligible candidates' and what decided."""
    tied = pick.get("tied_with")
    if not isinstance(tied, str) or not tied:
        return ""
    return (f" Its batch-1 latency ties with {tied}'s: the difference is inside the measurement noise (see the "
            "rule below), so the tie-break decided: fewer multiply-adds per image, then the "
            "smaller model file, then the higher accuracy.")


def _p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def _who(row) -> str:
    """A candidate by name and run; one pooled from several seeds names them all, as its figures
    are their mean."""
    if row.get("runs", 1) > 1 and isinstance(row.get("run_ids"), str):
        return f"{row['label']} (mean of runs {row['run_ids']})"
    return f"{row['label']} (run #{int(row['run'])})"


def _accuracy_text(row) -> str:
    text = f"test accuracy {_pct(row['test_accuracy'])}"
    if row["runs"] > 1:
        std = row["test_accuracy_std"]
        text += f" (mean of {row['runs']} seeds, ± {_points(std)} points std; range {_pct(row['test_accuracy_min'])}" \
                f"–{_pct(row['test_accuracy_max'])})"
    return text


def recommendation_text(ranked: pd.DataFrame, vs: pd.DataFrame, labels: dict[int, str] | None = None,
                        test_images: int | None = None, *, alpha: float, rule: str) -> str:
    """The written justification of the top-ranked candidate: what it scores and costs, why it
    was chosen, what it gives up, and which runs McNemar does not separate from it."""
    pick = ranked.iloc[0]
    ref = ranked[ranked["reference"]].iloc[0]
    labels = labels or {}
    lines = [
        f"**Recommended for production: {_who(pick)}.** {_accuracy_text(pick).capitalize()}; batch-1 latency "
        f"{_ms(pick['latency_p50_ms'])} p50 / {_ms(pick['latency_p95_ms'])} p95, "
        + (f"{pick['throughput_ips']:,.0f} images/s at batch 256; " if pick["throughput_ips"] == pick["throughput_ips"]
           else "")
        + f"{int(pick['params']):,} parameters, {_macs(pick.get('macs'))}, a {_bytes(pick['model_bytes'])} model file; "
        f"trained in "
        f"{_duration(pick['train_seconds'])}; final train-validation gap {_points(pick['gap'])} points"
        + (f" (diagnosis: {pick['diagnosis']})." if isinstance(pick.get("diagnosis"), str) else "."),
    ]
    lines.append("")
    lines.append("**Why this one:** " + _why_text(ranked, pick, ref, alpha) + _tie_text(pick))
    lines.append("")
    lines.append("**What it gives up:** " + _gives_up_text(ranked, pick, ref))
    lines.append("")
    lines.append(_versus_text(vs, labels, test_images, alpha))
    caveats = _caveats(ranked, pick)
    if caveats:
        lines += ["", "**Caveats:** " + " ".join(caveats)]
    lines += ["", f"*Rule:* {rule}"]
    return "\n".join(lines)


def _why_text(ranked: pd.DataFrame, pick, ref, alpha: float) -> str:
    if len(ranked) == 1:
        return "it is the only finished candidate on this test set."
    if pick["key"] == ref["key"]:
        faster = ranked[(ranked["latency_p50_ms"] < pick["latency_p50_ms"]) & ranked["within_tolerance"]]
        text = "it is the most accurate candidate"
        if faster.empty:
            return text + ", and no candidate within a point of its accuracy answers faster."
        ruled_out = "; ".join(f"{_who(r)}: {r['why'] if r['why'] != 'eligible' else 'its latency ties within the noise'}"
                              for _, r in faster.iterrows())
        return text + f"; the faster candidates within a point of it are ruled out ({ruled_out})."
    drop = _points(ref["test_accuracy"] - pick["test_accuracy"])
    speed = ref["latency_p50_ms"] / pick["latency_p50_ms"] if pick["latency_p50_ms"] else float("nan")
    text = (
        f"it is {drop} points below the most accurate candidate, {_who(ref)} at {_pct(ref['test_accuracy'])}, "
        f"a difference McNemar's test does not find significant ({_p(pick['p_value'])} at alpha {alpha:g}), "
        + (f"while it answers {speed:.1f}x faster" if _who(ref) not in str(pick.get("tied_with") or "") else
           "while it answers as fast within the noise")
        + f" ({_ms(pick['latency_p50_ms'])} vs {_ms(ref['latency_p50_ms'])} p50)"
    )
    if pick["model_bytes"] == pick["model_bytes"] and ref["model_bytes"] == ref["model_bytes"] and ref["model_bytes"]:
        ratio = pick["model_bytes"] / ref["model_bytes"]
        text += f" with a model file {ratio:.2f}x the size ({_bytes(pick['model_bytes'])} vs {_bytes(ref['model_bytes'])})"
    return text + "."


def _gives_up_text(ranked: pd.DataFrame, pick, ref) -> str:
    parts = []
    if pick["key"] != ref["key"]:
        parts.append(f"{_points(ref['test_accuracy'] - pick['test_accuracy'])} points of mean test accuracy against "
                     f"{_who(ref)}.")
    else:
        parts.append("no accuracy: it is the most accurate candidate.")
    faster = ranked[ranked["latency_p50_ms"] < pick["latency_p50_ms"]].sort_values("latency_p50_ms")
    if not faster.empty:
        f = faster.iloc[0]
        parts.append(
            f"The fastest candidate, {_who(f)}, answers in {_ms(f['latency_p50_ms'])} but is "
            f"{_points(pick['test_accuracy'] - f['test_accuracy'])} points less accurate ({_pct(f['test_accuracy'])})."
        )
    smaller = ranked[ranked["model_bytes"] < pick["model_bytes"]]
    if not smaller.empty and (faster.empty or smaller["model_bytes"].min() < faster.iloc[0]["model_bytes"]):
        s = smaller.sort_values("model_bytes").iloc[0]
        parts.append(f"The smallest, {_who(s)}, is {_bytes(s['model_bytes'])} at {_pct(s['test_accuracy'])}.")
    return " ".join(parts)


def _versus_text(vs: pd.DataFrame, labels: dict[int, str], test_images: int | None, alpha: float) -> str:
    on = f" on the same {test_images:,} test images" if test_images else " on the same test images"
    head = f"**Compared with every other finished run** (McNemar{on}, alpha {alpha:g}): "
    if vs.empty:
        return head + "there is no other finished run."

    def names(part: pd.DataFrame) -> str:
        if part.empty:
            return "none"
        return ", ".join(
            f"#{int(r.run)} {labels.get(int(r.run), '')} ({_pct(r.accuracy)}, {_p(r.p_value)})".replace("  ", " ")
            for r in part.sort_values("accuracy", ascending=False).itertuples()
        )

    same = vs[vs["direction"] == "not significantly different"]
    worse = vs[vs["direction"] == "worse"]
    better = vs[vs["direction"] == "better"]
    text = head + f"not significantly different: {names(same)}. Significantly worse: {names(worse)}."
    if not better.empty:
        text += f" Significantly better (kept out by the rule, e.g. too slow): {names(better)}."
    return text


SHORT_EPOCHS = 10  # the notebook trained its nets 10 to 40 epochs; fewer reads as a short run


def _epochs_caveat(ranked: pd.DataFrame) -> str | None:
    """What the candidates' training lengths mean for the ranking: short or unequal runs."""
    if "epochs" not in ranked or ranked["epochs"].isna().all():
        return None
    low, high = int(ranked["epochs"].min()), int(ranked["epochs"].max())
    span = f"{low}" if low == high else f"{low}-{high}"
    if high < SHORT_EPOCHS:
        every = "Every candidate" if len(ranked) > 1 else "It"
        return (f"{every} trained only {span} epoch{'s' if high > 1 else ''}: the accuracies are those of short runs, "
                "and longer training may change the ranking.")
    if low != high:
        return f"The candidates trained {span} epochs, not alike: a longer run may owe its accuracy to its length."
    return None


def _caveats(ranked: pd.DataFrame, pick) -> list[str]:
    out = [c for c in [_epochs_caveat(ranked)] if c]
    if pick["validation"] == "test":
        out.append(
            "This run validated on the test set each epoch (the notebook's setting), so its test accuracy also "
            "guided training and is optimistic; confirm on held-out data before relying on the figure."
        )
    if pick["measured_while_busy"]:
        load = pick.get("measured_load")
        by = f"other processes kept {load:.1f} cores busy" if load is not None and load == load else \
            "the machine's load could not be read"
        out.append(
            f"Its latency was measured while {by}; re-measure on a quiet machine with "
            f"`python -m cifar_core measure {int(pick['run'])}`."
        )
    if pick["latency_p50_ms"] != pick["latency_p50_ms"]:
        out.append(f"Its latency was never measured: `python -m cifar_core measure {int(pick['run'])}`.")
    return out
