"""What a saved model costs to run on this machine: batch-1 latency, batched throughput, file
size and, given its spec, multiply-adds (`measure_cost`, which the worker and the Ray dispatcher
call after training and the run stores), and several models measured together for a fair
comparison (`measure_together`).

Latency is measured on a `tf.function`-compiled `model(x, training=False)` with a fixed input
signature, including copying the result back to NumPy. That is the call a server makes, and
the fastest of the paths measured here at batch 1 on a two-conv-block CNN (p50 on the shared
2-core CPU): compiled call ~2 ms, `model.predict_on_batch` ~4-5 ms, eager `model(x)` ~22 ms,
`model.predict` ~170 ms (it builds a dataset and step function per call). The slower paths
measure Keras's per-call overhead, not the model.

`measure_cost` loads a `.keras` file, which can hold code: only call it on models this app
trained and saved itself, never on an uploaded file.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from cifar_core.errors import DataError, LabError

LATENCY_METHOD = "tf.function(model(x, training=False)), result copied to NumPy"


@dataclass(frozen=True)
class LatencyResult:
    p50_ms: float  # batch-1 latency percentiles over batch1_repeats calls
    p95_ms: float
    mean_ms: float
    min_ms: float
    throughput_ips: float  # images per second at throughput_batch
    batch1_repeats: int
    warmup: int
    throughput_batch: int
    throughput_repeats: int
    method: str = LATENCY_METHOD

    def to_dict(self) -> dict:
        return asdict(self)


def _compiled_call(model, input_shape: tuple[int, ...]):
    import tensorflow as tf

    spec = tf.TensorSpec((None, *input_shape), tf.float32)
    return tf.function(lambda x: model(x, training=False), input_signature=[spec])


def check_counts(**counts: int) -> None:
    for name, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "warmup" else 1):
            raise LabError(f"{name}={value!r} must be {'0 or more' if name == 'warmup' else 'at least 1'}")


def _inputs(input_shape: tuple[int, ...], throughput_batch: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    one = rng.uniform(0, 255, (1, *input_shape)).astype(np.float32)
    return one, rng.uniform(0, 255, (throughput_batch, *input_shape)).astype(np.float32)


def _batch1_ms(call, one: np.ndarray, repeats: int) -> np.ndarray:
    """Milliseconds of `repeats` timed batch-1 calls."""
    times = np.empty(repeats)
    for i in range(repeats):
        start = time.perf_counter()
        call(one).numpy()
        times[i] = time.perf_counter() - start
    return times * 1000


def _throughput(call, many: np.ndarray, repeats: int) -> float:
    """Images per second over `repeats` calls on the batch, after one untimed call."""
    call(many).numpy()
    start = time.perf_counter()
    for _ in range(repeats):
        call(many).numpy()
    return len(many) * repeats / (time.perf_counter() - start)


def measure_latency(
    model,
    input_shape: tuple[int, ...] = (32, 32, 3),
    batch1_repeats: int = 200,
    warmup: int = 20,
    throughput_batch: int = 256,
    throughput_repeats: int = 5,
) -> LatencyResult:
    """Batch-1 latency percentiles and batched throughput of the compiled forward pass on this CPU
    (one model, one pass: to compare models, use `measure_together`)."""
    check_counts(batch1_repeats=batch1_repeats, warmup=warmup, throughput_batch=throughput_batch,
                  throughput_repeats=throughput_repeats)
    call = _compiled_call(model, tuple(input_shape))
    one, many = _inputs(tuple(input_shape), throughput_batch)
    for _ in range(max(warmup, 1)):  # at least one call, so tracing is never timed
        call(one).numpy()
    ms = _batch1_ms(call, one, batch1_repeats)
    return LatencyResult(
        p50_ms=float(np.percentile(ms, 50)),
        p95_ms=float(np.percentile(ms, 95)),
        mean_ms=float(ms.mean()),
        min_ms=float(ms.min()),
        throughput_ips=_throughput(call, many, throughput_repeats),
        batch1_repeats=batch1_repeats,
        warmup=warmup,
        throughput_batch=throughput_batch,
        throughput_repeats=throughput_repeats,
    )


@dataclass(frozen=True)
class CandidateLatency:
    name: str  # the caller's name for the model (the CLI uses "#<run>")
    p50_ms: float  # median over the rounds of each round's batch-1 p50
    spread_pct: float  # (max - min) of the rounds' p50s, in % of p50_ms: the noise between rounds
    p95_ms: float  # batch-1 p95 over every timed call of every round
    throughput_ips: float  # median over the rounds, images per second at throughput_batch
    round_p50_ms: tuple[float, ...]  # each round's p50, in round order


@dataclass(frozen=True)
class JointLatency:
    """Models measured together: each round visits every model (in a rotated order), so host
    noise during the measurement falls on all of them alike."""

    candidates: tuple[CandidateLatency, ...]
    orders: tuple[tuple[int, ...], ...]  # per round, the candidates' indices in the order visited
    other_cores: float  # cores other processes used on average meanwhile (hostload); NaN: unknown
    busy: bool  # other_cores above hostload.BUSY_CORES (or unknown)
    rounds: int
    batch1_repeats: int  # timed batch-1 calls per candidate per round
    warmup: int  # untimed calls before each visit's timing (caches are cold after another model)
    throughput_batch: int
    throughput_repeats: int
    method: str = LATENCY_METHOD

    def to_dict(self) -> dict:
        return asdict(self)


def visit_orders(n: int, rounds: int) -> tuple[tuple[int, ...], ...]:
    """The order each round visits n candidates: rotated by one per round, so every candidate is
    measured first, last and in between as often as the rounds allow."""
    return tuple(tuple((r + i) % n for i in range(n)) for r in range(rounds))


def measure_together(
    models: dict[str, object],
    input_shape: tuple[int, ...] = (32, 32, 3),
    rounds: int = 5,
    batch1_repeats: int = 50,
    warmup: int = 5,
    throughput_batch: int = 256,
    throughput_repeats: int = 2,
) -> JointLatency:
    """Batch-1 latency and throughput of several models measured interleaved: every model is
    compiled first, then each of `rounds` rounds visits every model in a rotated order
    (`visit_orders`) for a block of batch-1 calls and a throughput block. Per model: the median of
    the rounds' p50s and their spread; for the whole measurement: the load other processes put
    on the machine meanwhile (`hostload`)."""
    from cifar_core.train.hostload import LoadMeter

    if not models:
        raise LabError("no models to measure; give at least one")
    check_counts(rounds=rounds, batch1_repeats=batch1_repeats, warmup=warmup, throughput_batch=throughput_batch,
                  throughput_repeats=throughput_repeats)
    names = list(models)
    calls = [_compiled_call(models[n], tuple(input_shape)) for n in names]
    one, many = _inputs(tuple(input_shape), throughput_batch)
    for call in calls:  # trace each once, outside the timing
        call(one).numpy()
    orders = visit_orders(len(names), rounds)
    batch1 = [[] for _ in names]
    throughput = [[] for _ in names]
    with LoadMeter() as load:
        for order in orders:
            for i in order:
                for _ in range(warmup):
                    calls[i](one).numpy()
                batch1[i].append(_batch1_ms(calls[i], one, batch1_repeats))
                throughput[i].append(_throughput(calls[i], many, throughput_repeats))
    results = tuple(_candidate(n, b, t) for n, b, t in zip(names, batch1, throughput))
    return JointLatency(results, orders, load.other_cores, load.busy, rounds, batch1_repeats, warmup,
                        throughput_batch, throughput_repeats)


def _candidate(name: str, rounds_ms: list[np.ndarray], throughput: list[float]) -> CandidateLatency:
    p50s = np.array([np.percentile(ms, 50) for ms in rounds_ms])
    p50 = float(np.median(p50s))
    return CandidateLatency(
        name=name, p50_ms=p50, spread_pct=float((p50s.max() - p50s.min()) / p50 * 100) if p50 > 0 else 0.0,
        p95_ms=float(np.percentile(np.concatenate(rounds_ms), 95)), throughput_ips=float(np.median(throughput)),
        round_p50_ms=tuple(float(v) for v in p50s),
    )


def measure_cost(model_path: Path | str, input_shape: tuple[int, ...] = (32, 32, 3), spec=None) -> dict:
    """What a saved model costs to run on this machine, as a run stores it: model_bytes (file
    size), latency_p50_ms and latency_p95_ms (batch 1), latency_spread_pct (between 3 rounds),
    throughput_ips (batch 256), measured_load (cores other processes used meanwhile),
    measured_while_busy (that load above hostload.BUSY_CORES) and, given the run's spec, macs
    (multiply-adds per image). Loads the file with the lab's loader: only for models this app
    trained (see module docstring)."""
    from cifar_core.spec.cost import multiply_adds
    from cifar_core.train.models import load_model

    joint = measure_together({"model": load_model(model_path)}, input_shape, rounds=3, batch1_repeats=34, warmup=5)
    figures = {"model_bytes": model_file_size(model_path), **cost_figures(joint, joint.candidates[0])}
    if spec is not None:
        figures["macs"] = multiply_adds(spec, tuple(input_shape))
    return figures


COST_COMMAND = "_measure-cost"  # python -m cifar_core _measure-cost: `measure_cost` in a child process
COST_TIMEOUT = 600.0  # seconds for it (it imports TensorFlow first)


def measure_cost_apart(model_path: Path | str, input_shape: tuple[int, ...], spec: dict | None = None) -> dict:
    """`measure_cost` in a short-lived child process, `python -m cifar_core _measure-cost`, so
    TensorFlow never loads into the caller (the Ray dispatcher, which stays small between jobs)."""
    from cifar_core.config import run_cli_json

    args = [COST_COMMAND, str(model_path), "--input-shape", ",".join(map(str, input_shape))]
    if spec is not None:
        args += ["--spec", json.dumps(spec)]
    return run_cli_json(args, COST_TIMEOUT, f"measuring {model_path} took over {COST_TIMEOUT:.0f} s")


def cost_main(argv: list[str]) -> int:
    """The child of `measure_cost_apart`: measure, print the figures as JSON."""
    import argparse

    p = argparse.ArgumentParser(prog=f"python -m cifar_core {COST_COMMAND}",
                                description="measure a trained model's cost (started by the Ray dispatcher, not by hand)")
    p.add_argument("model")
    p.add_argument("--input-shape", required=True, help="e.g. 32,32,3")
    p.add_argument("--spec", help="the run's spec as JSON (for its multiply-adds)")
    args = p.parse_args(argv)
    shape = tuple(int(v) for v in args.input_shape.split(","))
    print(json.dumps(measure_cost(args.model, shape, json.loads(args.spec) if args.spec else None)))
    return 0


def cost_figures(joint: JointLatency, c: CandidateLatency) -> dict:
    """The run columns one candidate of a joint measurement sets."""
    return {
        "latency_p50_ms": c.p50_ms, "latency_p95_ms": c.p95_ms, "latency_spread_pct": c.spread_pct,
        "throughput_ips": c.throughput_ips, "measured_load": None if math.isnan(joint.other_cores) else joint.other_cores,
        "measured_while_busy": int(joint.busy),
    }


# The parts of a SavedModel.
SAVED_MODEL_PARTS = ("saved_model.pb", "saved_model.pbtxt", "fingerprint.pb", "variables", "assets", "assets.extra")


def _saved_model_files(folder: Path) -> list[Path]:
    """The files of the SavedModel in folder (not the other formats exported beside it)."""
    files = []
    for part in map(folder.joinpath, SAVED_MODEL_PARTS):
        if part.is_file():
            files.append(part)
        elif part.is_dir():
            files += sorted(p for p in part.rglob("*") if p.is_file())
    return files


def model_file_size(path: Path | str) -> int:
    """Bytes on disk of a model file, or of a SavedModel folder's own files (of every file under
    any other folder)."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    if path.is_dir():
        files = _saved_model_files(path) if (path / "saved_model.pb").is_file() else path.rglob("*")
        return sum(p.stat().st_size for p in files if p.is_file())
    raise DataError(f"model file {path} does not exist; check the run finished and saved model.keras")
