"""`python -m cifar_core`: the lab from the command line. Errors exit 2 with one readable line."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from .errors import LabError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m cifar_core", description="CIFAR Lab from the command line")
    sub = p.add_subparsers(dest="command", required=True)

    sub.add_parser("presets", help="list the built-in experiments")

    s = sub.add_parser("summary", help="layer-by-layer summary of an experiment")
    s.add_argument("spec", help="a preset name or a path to a JSON spec")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("submit", help="enqueue an experiment; prints the job ids")
    s.add_argument("spec", help="a preset name or a path to a JSON spec")
    s.add_argument("--epochs", type=int)
    s.add_argument("--batch-size", type=int)
    s.add_argument("--seed", type=int)
    s.add_argument("--repeats", type=int, default=1, help="K runs with seeds seed..seed+K-1, grouped")
    s.add_argument("--data", help="data source (default: $CIFAR_LAB_DATA or keras)")

    s = sub.add_parser("worker", help="run a worker in the foreground")
    s.add_argument("--exit-when-idle", action="store_true", help="stop when the queue is empty")
    s.add_argument("--threads", type=int, help="TensorFlow threads (default: cores / live workers)")
    s.add_argument("--lease", type=float, default=30.0, help="lease seconds (a dead worker's job is retaken after this)")
    s.add_argument("--max-jobs", type=int)

    s = sub.add_parser("runs", help="list runs")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("show", help="one run and its per-epoch history")
    s.add_argument("run_id", type=int)
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("cancel", help="cancel a queued or running job")
    s.add_argument("job_id", type=int)

    s = sub.add_parser("data-info", help="describe a data source")
    s.add_argument("--data")
    s.add_argument("--json", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args) or 0
    except LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _presets(args) -> None:
    from .presets import PRESETS
    from .spec import summarize

    for name, doc in PRESETS.items():
        print(f"{name:8} {summarize(doc).total_params:>10,} params  {doc.get('description', '')}")


def _summary(args) -> None:
    from .spec import load_spec, summarize

    summary = summarize(load_spec(args.spec))
    print(json.dumps(summary.to_dict(), indent=2) if args.json else summary.to_text())


def _submit(args) -> None:
    from .experiments import submit_experiment
    from .spec import load_spec
    from .store import connect

    ids = submit_experiment(
        connect(), load_spec(args.spec), args.data, repeats=args.repeats,
        epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
    )
    print(" ".join(str(i) for i in ids))


def _worker(args) -> None:
    from .worker import Worker, WorkerConfig

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    worker = Worker(WorkerConfig(threads=args.threads, lease_seconds=args.lease, exit_when_idle=args.exit_when_idle,
                                 max_jobs=args.max_jobs))
    worker.install_signal_handlers()
    done = worker.run()
    logging.getLogger("cifar_lab.worker").info("worker %s stopped after %d job(s)", worker.id, done)


def _runs(args) -> None:
    from .results import leaderboard
    from .store import connect

    board = leaderboard(connect())
    if args.json:
        print(board.to_json(orient="records", date_format="iso"))
        return
    if board.empty:
        print("no runs yet: `python -m cifar_core submit exp5` enqueues one")
        return
    cols = ["run", "name", "status", "params", "epochs", "best_val_accuracy", "best_epoch", "test_accuracy", "seconds_per_epoch"]
    print(board[cols].to_string(index=False, float_format=lambda v: f"{v:.4f}"))


def _show(args) -> None:
    from .results import run_detail
    from .store import connect

    detail = run_detail(connect(), args.run_id)
    if args.json:
        print(json.dumps(detail.to_dict(), indent=2, default=str))
        return
    job = detail.job
    print(f"run {job.id} {job.name}: {job.state}, attempt {job.attempts}, {detail.params:,} params, seed {detail.seed}")
    if job.error:
        print(f"note: {job.error}")
    if detail.test_accuracy is not None:
        print(f"test accuracy {detail.test_accuracy:.4f}, test loss {detail.test_loss:.4f}")
    if detail.history.empty:
        print("no finished epoch yet")
    else:
        print(detail.history.to_string(index=False, float_format=lambda v: f"{v:.4f}"))


def _cancel(args) -> None:
    from .queue import cancel
    from .store import connect

    state = cancel(connect(), args.job_id)
    print(f"job {args.job_id}: {state}" + (" (stop requested; it stops within seconds)" if state == "running" else ""))


def _data_info(args) -> None:
    from .data import dataset_info, load_dataset

    info = dataset_info(load_dataset(args.data))
    if args.json:
        print(json.dumps(info.to_dict(), indent=2))
        return
    print(f"source: {info.source}")
    print(f"train: {info.train_shape}  test: {info.test_shape}")
    for i, name in enumerate(info.class_names):
        print(f"  {name:12} train {info.counts['train'][i]:6}  test {info.counts['test'][i]:6}")
    print("channel mean:", ", ".join(f"{v:.2f}" for v in info.channel_mean))
    print("channel std: ", ", ".join(f"{v:.2f}" for v in info.channel_std))


COMMANDS = {
    "presets": _presets, "summary": _summary, "submit": _submit, "worker": _worker, "runs": _runs,
    "show": _show, "cancel": _cancel, "data-info": _data_info,
}
