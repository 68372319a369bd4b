"""`python -m cifar_core`: the lab from the command line. Errors exit 2 with one readable line."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from cifar_core.errors import LabError
from cifar_core.search.config import OBJECTIVE2_COLUMNS, PRUNERS, SAMPLERS


MAX_ID = 2**63 - 1  # the largest integer SQLite stores


def _id(text: str) -> int:
    """A run, job or group id argument: a whole number 1..MAX_ID. Anything else makes argparse
    exit 2 with its usage and one error line (a huge number used to overflow SQLite with a traceback)."""
    digits = text.strip().lstrip("+-")
    if not digits.isascii() or not digits.isdigit():
        raise argparse.ArgumentTypeError(f"{text[:30]!r} is not an id; ids are whole numbers such as 3")
    if len(digits.lstrip("0")) > len(str(MAX_ID)) or not 1 <= int(text) <= MAX_ID:
        shown = text if len(text) <= 30 else f"{text[:12]}... ({len(digits):,} digits)"
        raise argparse.ArgumentTypeError(f"{shown} is not an id; ids run from 1 to {MAX_ID}")
    return int(text)


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
    _tag_arg(s)

    s = sub.add_parser("sweep", help="enqueue a sweep over a search space; prints the sweep's number (among the sweeps) and the job ids")
    s.add_argument("spec", help="the base experiment: a preset name or a path to a JSON spec")
    s.add_argument("--space", required=True, help="search space: a JSON file (or JSON text), see cifar_core/spec/space.py")
    s.add_argument("--epochs", type=int, help="epochs of every run (default: the base experiment's)")
    s.add_argument("--data", help="data source (default: $CIFAR_LAB_DATA or keras)")
    s.add_argument("--sampler", choices=SAMPLERS, help="Optuna's sampler draws the trials (tpe and nsga2 learn from the ended "
                   "ones); default: the space's own method, every trial queued at once")
    s.add_argument("--objective2", choices=OBJECTIVE2_COLUMNS, help="with --sampler nsga2: the second objective, "
                   "minimised beside validation accuracy (latency: batch-1 p50 ms; macs: multiply-adds per image)")
    s.add_argument("--population", type=int, default=8, help="with --sampler nsga2: trials per generation (default 8)")
    _pruner_args(s, "stops losing trials after each epoch (default none; none with nsga2)")
    s.add_argument("--seed", type=int, default=0, help="the sampler's seed: the same seed gives the same trials")
    s.add_argument("--max-trials", type=int, default=20, help="trials the sweep starts at most (default 20)")
    s.add_argument("--max-epochs", type=int, help="epochs the whole sweep trains at most (default: no cap)")
    s.add_argument("--max-minutes", type=float, help="minutes of training the sweep spends at most (default: no cap)")
    _tag_arg(s)

    s = sub.add_parser("sweep-replay", help="what a pruner would have done to a finished sweep's recorded curves")
    s.add_argument("sweep", type=int, help="the sweep's number, as `sweep` printed it")
    _pruner_args(s, "the pruner to replay", required=True)
    s.add_argument("--shuffles", type=int, default=0, help="replay over this many shuffled orders too (seeded)")
    s.add_argument("--seed", type=int, default=0, help="the shuffles' seed")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("sweep-stop", help="stop a sweep: its queued trials are cancelled, running ones stop after "
                       "their epoch; paused ones stay paused")
    s.add_argument("sweep", type=int, help="the sweep's number, as `sweep` printed it")

    s = sub.add_parser("sweep-resume", help="resume a stopped sweep (or one whose budget is spent), with a larger "
                       "budget: its stopped trials go on from their checkpoints, and its sampler asks for more")
    s.add_argument("sweep", type=int, help="the sweep's number, as `sweep` printed it")
    s.add_argument("--max-trials", type=int, help="the sweep's new trial budget (default: unchanged)")
    s.add_argument("--max-epochs", type=int, help="the sweep's new epoch budget (default: unchanged)")
    s.add_argument("--max-minutes", type=float, help="the sweep's new budget in minutes of training (default: unchanged)")

    s = sub.add_parser("sweep-report", help="write a sweep's report (Markdown and HTML with its figures): how it "
                       "searched, its trials and why stopped ones stopped, curves, rungs, Pareto front, importance")
    s.add_argument("sweep", type=int, help="the sweep's number, as `sweep` printed it")
    s.add_argument("--out", help="report folder, or a .md/.html path (default: <lab home>/reports/sweep-N-<time>)")

    s = sub.add_parser("refit", help="queue a finished holdout run's configuration trained on train + holdout, the "
                       "test set scored once at the end, as a refit; prints the job id")
    s.add_argument("run_id", type=_id)

    s = sub.add_parser("worker", help="run a worker in the foreground")
    s.add_argument("--exit-when-idle", action="store_true", help="stop when nothing is queued or running (it stays to take back an orphaned job)")
    s.add_argument("--threads", type=int, help="TensorFlow threads (default: cores / live workers)")
    s.add_argument("--lease", type=float, default=30.0, help="lease seconds (a dead worker's job is retaken after this)")
    s.add_argument("--max-jobs", type=int)
    s.add_argument("--ray", metavar="ADDRESS",
                   help="dispatch the queue to a Ray cluster: host:port, auto, or local (a private Ray on this machine)")

    s = sub.add_parser("runs", help="list runs (with their tags and notes)")
    _list_args(s)

    s = sub.add_parser("leaderboard", help="every run with its figures, or pooled over seeds per configuration")
    _list_args(s)
    s.add_argument("--group-seeds", action="store_true",
                   help="one row per configuration (every setting but the seed and the name, on one data source): "
                        "runs, mean, std and min-max of best validation and test accuracy")

    s = sub.add_parser("show", help="one run and its per-epoch history")
    s.add_argument("run_id", type=_id)
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("cancel", help="cancel a queued or running job")
    s.add_argument("job_id", type=_id)

    s = sub.add_parser("retry", help="queue a failed or cancelled job again; it resumes from its last finished epoch")
    s.add_argument("job_id", type=int)

    _keeping_parsers(sub)

    sub.add_parser("backup", help="copy the store to <lab home>/backups now (workers also do it every 10 minutes)")
    s = sub.add_parser("restore", help="put a backup in place of the store (stop the app and workers first)")
    s.add_argument("backup", nargs="?", help="the backup file (default: the newest in <lab home>/backups)")

    s = sub.add_parser("data-info", help="describe a data source")
    s.add_argument("--data")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("measure", help="measure finished runs' latency and throughput together, interleaved over "
                                        "rounds, and store them with the machine's load meanwhile")
    s.add_argument("run_ids", type=_id, nargs="+", metavar="RUN")
    s.add_argument("--rounds", type=int, default=5, help="rounds; each measures every run once, in a rotated order")
    s.add_argument("--repeats", type=int, default=50, help="batch-1 calls timed per run per round")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("export", help="export a finished run as .keras, a TF Serving SavedModel and .tflite in a new "
                                       "version folder (never overwrites)")
    s.add_argument("run_id", type=_id)
    s.add_argument("--out", help="folder (default: <lab home>/exports)")
    s.add_argument("--name", help="serving name (default: <experiment>-run<id>)")
    s.add_argument("--version", type=int, help="version folder <out>/<name>/<version>/ (default: the next free one)")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("choose", help="deployment scorecard of the finished runs and the recommended one")
    s.add_argument("--data", help="the data source whose runs to compare (default: the most recently used)")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("reproduce", help="train the notebook's five experiments through the queue and write a report")
    s.add_argument("--data", help="data source (default: $CIFAR_LAB_DATA or keras)")
    s.add_argument("--out", help="report folder, or a .md/.html path (default: <lab home>/reports/reproduce-<time>)")
    s.add_argument("--epochs-scale", type=float, default=1.0, help="multiply each preset's epochs (at least 1)")
    s.add_argument("--epochs", type=int, help="train every preset this many epochs instead")
    s.add_argument("--timeout", type=float, help="give up waiting after this many seconds (the jobs keep running)")
    s.add_argument("--seeds", type=int, default=1, help="train each experiment with seeds 0..N-1 (default 1: seed 0)")

    s = sub.add_parser("report", help="write the reproduce report of a group of runs again")
    s.add_argument("--group", type=_id, required=True, help="the group id `reproduce` printed")
    s.add_argument("--out", help="report folder, or a .md/.html path")
    s.add_argument("--reference-epoch", type=float, metavar="SECONDS",
                   help="seconds of a reference epoch timed in the same session (scripts/reference_epoch.py): "
                        "epoch times are also shown as multiples of it")

    s = sub.add_parser("audit", help="who did what (a lab with a login records every submit, cancel, retry, export...)")
    s.add_argument("--user", help="only this user's actions (their e-mail)")
    s.add_argument("--limit", type=int, default=50, help="the newest N records (default 50)")
    s.add_argument("--json", action="store_true")
    for command in sub.choices.values():  # every command, so that one added later takes it too
        command.add_argument("--as", dest="as_user", metavar="EMAIL",
                             help="who acts, in a lab with a login ([auth] in the secrets): their [roles] apply "
                                  "and what they do is recorded")
    return p


def _tag_arg(s) -> None:
    s.add_argument("--tag", action="append", default=[], metavar="TAG",
                   help="tag every run (repeat for more tags); a tag is 1-40 letters, digits, '.', '_' or '-'")


def _list_args(s) -> None:
    from cifar_core.analysis.filters import FILTER_HELP

    s.add_argument("--filter", default="", metavar="EXPR", help=FILTER_HELP.replace("%", "%%"))
    s.add_argument("--archived", action="store_true", help="include archived runs")
    s.add_argument("--json", action="store_true")


def _keeping_parsers(sub) -> None:
    for name, what in (("tag", "add tags to a run, or with --seed-group to a configuration"),
                       ("untag", "remove tags from a run, or with --seed-group from a configuration")):
        s = sub.add_parser(name, help=what)
        s.add_argument("items", nargs="+", metavar="RUN TAG", help="the run id, then its tags (with --seed-group: tags only)")
        s.add_argument("--seed-group", metavar="CONFIG", help="a configuration's key (the leaderboard's `config`)")
    s = sub.add_parser("note", help="set a run's (or a seed group's) Markdown note; empty text removes it")
    s.add_argument("items", nargs="+", metavar="RUN TEXT", help="the run id, then the note (with --seed-group: the note only)")
    s.add_argument("--seed-group", metavar="CONFIG", help="a configuration's key (the leaderboard's `config`)")
    for name, what in (("archive", "hide runs from every page and list by default"),
                       ("unarchive", "show archived runs again"),
                       ("undelete", "bring runs back from the trash, with their files")):
        s = sub.add_parser(name, help=what)
        s.add_argument("run_ids", type=_id, nargs="+", metavar="RUN")
    s = sub.add_parser("delete", help="move finished runs and their files to the trash (undelete brings them back)")
    s.add_argument("run_ids", type=_id, nargs="+", metavar="RUN")
    s.add_argument("--force", action="store_true", help="delete even a run an export, the model choice or the baseline "
                                                          "depends on")
    sub.add_parser("trash", help="list the runs in the trash")
    sub.add_parser("empty-trash", help="remove the trashed runs and their files for good")
    s = sub.add_parser("baseline", help="pin a succeeded run as the leaderboard's baseline; no RUN shows it, --clear unpins")
    s.add_argument("run_id", type=_id, nargs="?", metavar="RUN")
    s.add_argument("--clear", action="store_true")


def main(argv: list[str] | None = None) -> int:
    from cifar_core.analysis import helper
    from cifar_core.jobs import child
    from cifar_core.train import latency

    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == [child.COMMAND]:  # a worker's job process: not a user's command, so not in the help
        _leave(_run_child(child.main, argv[1:]))
    if argv[:1] == [helper.COMMAND]:  # the server's model helper (analysis.helper), likewise
        _leave(_helper())
    if argv[:1] == [latency.COST_COMMAND]:  # the Ray dispatcher's measurement of a finished model, likewise
        _leave(_run_child(latency.cost_main, argv[1:]))
    args = _parser().parse_args(argv)
    global _as_user
    _as_user = args.as_user
    try:
        return COMMANDS[args.command](args) or 0
    except LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _presets(args) -> None:
    from cifar_core.spec.presets import PRESETS
    from cifar_core.spec.summary import summarize

    for name, doc in PRESETS.items():
        print(f"{name:8} {summarize(doc).total_params:>10,} params  {doc.get('description', '')}")


def _summary(args) -> None:
    from cifar_core.spec.summary import summarize
    from cifar_core.spec.validate import load_spec

    summary = summarize(load_spec(args.spec))
    print(json.dumps(summary.to_dict(), indent=2) if args.json else summary.to_text())


_as_user: str | None = None  # the command's --as, set by main


def _lab():
    """The Lab acting for whoever runs the command: nobody in particular in a lab without a login
    (and --as is refused); the --as user with their role in a lab with one (without --as, only reads)."""
    from cifar_core import team
    from cifar_core.lab import Lab

    found = team.from_files()
    if _as_user is not None and not found.login:
        raise LabError(f"--as {_as_user}: this lab has no login configured (no complete [auth] section in "
                       f"{found.where}), so it has one local user and no roles; leave --as out")
    return Lab(found.actor(_as_user))


def _submit(args) -> None:
    from cifar_core.spec.validate import load_spec

    submitted = _lab().submit(load_spec(args.spec), args.data, repeats=args.repeats, tags=args.tag, epochs=args.epochs,
                              batch_size=args.batch_size, seed=args.seed)
    print(" ".join(str(i) for i in submitted.job_ids))


def _pruner_args(s, what: str, required: bool = False) -> None:
    s.add_argument("--pruner", choices=PRUNERS, required=required, help=what)
    s.add_argument("--min-epochs", type=int, default=1, help="epochs every trial trains before it may be stopped "
                   "(successive halving, Hyperband: the first rung)")
    s.add_argument("--eta", type=int, default=None, help="successive halving, Hyperband: the top 1/eta of a rung go on "
                   "(default: 4 for successive halving, 3 for Hyperband, as Optuna's)")
    s.add_argument("--percentile", type=float, default=25.0, help="percentile: keep the trials in the top P%%")
    s.add_argument("--startup-trials", type=int, default=5, help="median, percentile: no pruning before this many "
                   "trials completed")


def _pruner(args, epochs: int):
    """The pruner the flags ask for, judging trials of `epochs` epochs."""
    from cifar_core.search.config import PrunerConfig

    return PrunerConfig(kind=args.pruner or "none", min_epochs=args.min_epochs, eta=args.eta,
                        percentile=args.percentile, startup_trials=args.startup_trials, max_epochs=epochs)


def _sweep(args) -> None:
    from cifar_core.search.config import SearchConfig
    from cifar_core.spec.validate import load_spec

    base = load_spec(args.spec)
    if args.epochs is not None:
        base["epochs"] = args.epochs
    search = None
    if args.sampler or args.pruner or args.objective2:
        search = SearchConfig(sampler=args.sampler or json.loads(_read_space(args.space)).get("method", "random"),
                              pruner=_pruner(args, int(base["epochs"])), seed=args.seed, max_trials=args.max_trials,
                              max_epochs=args.max_epochs, max_minutes=args.max_minutes, objective2=args.objective2,
                              population=args.population)
    lab = _lab()
    group_id, ids = lab.submit_sweep(base, args.space, args.data, search, tags=args.tag)
    print(f"sweep {lab.sweep_number(group_id)}: {' '.join(str(i) for i in ids)}")


def _read_space(space: str) -> str:
    return Path(space).read_text() if Path(space).is_file() else space


def _sweep_replay(args) -> None:
    lab = _lab()
    group = lab.sweep_group(args.sweep)
    result = lab.replay_sweep(group, _pruner(args, int(lab.sweep(group).info.base["epochs"])), args.shuffles, args.seed)
    rows = [{"order": list(r.order), "stopped": {str(k): v for k, v in r.stopped.items()},
             "epochs_recorded": r.epochs_recorded, "epochs_run": r.epochs_run, "epochs_saved": r.epochs_saved,
             "best_trial": r.best_trial, "best_survived": r.best_survived, "best_kept": r.best_kept}
            for r in result.runs]
    if args.json:
        print(json.dumps({"runs": rows, "saved_share": result.saved_share,
                          "best_survived_share": result.best_survived_share}))
        return
    first = result.runs[0]
    print(f"in the order it ran: stopped {len(first.stopped)} of {len(first.order)} trials, "
          f"{first.epochs_run} of {first.epochs_recorded} epochs ({first.epochs_saved} saved); best trial "
          f"#{first.best_trial} {'survived' if first.best_survived else 'was stopped'}")
    for trial, why in first.reasons.items():
        print(f"  #{trial}: {why}")
    if len(result.runs) > 1:
        print(f"over {len(result.runs)} orders: {100 * result.saved_share:.1f}% of the epochs saved on average; "
              f"the best survived in {100 * result.best_survived_share:.0f}% of them")


def _sweep_stop(args) -> None:
    lab = _lab()
    print(lab.stop_sweep(lab.sweep_group(args.sweep)))


def _sweep_report(args) -> None:
    lab = _lab()
    md_path, html_path = lab.write_sweep_report(lab.sweep_group(args.sweep), args.out)
    print(f"report: {md_path}\nhtml:   {html_path}")


def _sweep_resume(args) -> None:
    lab = _lab()
    print(lab.resume_sweep(lab.sweep_group(args.sweep), max_trials=args.max_trials, max_epochs=args.max_epochs,
                           max_minutes=args.max_minutes))


def _refit(args) -> None:
    submitted = _lab().refit(args.run_id)
    print(f"refit of run {args.run_id}: job {submitted.job_ids[0]} (group {submitted.group_id})")


def _worker(args) -> None:
    from cifar_core.jobs.worker import Worker, WorkerConfig

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.ray:
        _dispatcher(args)
        return
    worker = Worker(WorkerConfig(threads=args.threads, lease_seconds=args.lease, exit_when_idle=args.exit_when_idle,
                                 max_jobs=args.max_jobs))
    worker.install_signal_handlers()
    done = worker.run()
    logging.getLogger("cifar_lab.worker").info("worker %s stopped after %d job(s)", worker.id, done)
    _leave(0)


def _run_child(main, argv: list[str]) -> int:
    try:
        return main(argv)
    except LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _helper() -> int:
    """The model helper's loop: the server's predictions and exports, in this process."""
    from cifar_core.analysis import helper
    from cifar_core.lab import Lab

    lab = Lab()  # the server's: it checked and records its user's actions itself
    return helper.serve({"predict_image": lab.predict_image_here, "export": lab.export_here},
                        warm=lambda: __import__("keras"))


def _leave(code: int) -> None:
    """Exit without the interpreter's exit handlers: HDF5's crash (SIGSEGV) on a file that a full
    disk left half-written, and the process has already closed everything of its own."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _dispatcher(args) -> None:
    from cifar_core.jobs.ray_dispatcher import Dispatcher, DispatcherConfig

    if args.threads:
        raise LabError("--threads is for a local worker; a Ray job takes $CIFAR_LAB_JOB_CPUS CPUs (default 2)")
    dispatcher = Dispatcher(DispatcherConfig(address=args.ray, lease_seconds=args.lease,
                                             exit_when_idle=args.exit_when_idle, max_jobs=args.max_jobs))
    dispatcher.install_signal_handlers()
    ended = dispatcher.run()
    logging.getLogger("cifar_lab.ray").info("dispatcher %s stopped after %d job(s)", dispatcher.id, ended)


def _printed(table, as_json: bool, empty: str) -> bool:
    """Print `table` as JSON records, or `empty` when it has no row; False when neither (print it as text)."""
    if as_json:
        print(table.to_json(orient="records", date_format="iso"))
    elif table.empty:
        print(empty)
    return as_json or table.empty


NO_RUNS = "no runs yet: `python -m cifar_core submit exp5` enqueues one"
NO_MATCH = "no run matches the filter"


def _board_text(table, cols: list[str]) -> None:
    """A runs table as text: its tags joined, figures to 4 places, a missing value as '-'."""
    shown = table[cols].assign(tags=table["tags"].map(", ".join))
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.4f}", na_rep="-"))


def _runs(args) -> None:
    board = _lab().leaderboard(where=args.filter, archived=args.archived)
    if _printed(board, args.json, NO_MATCH if args.filter else NO_RUNS):
        return
    _board_text(board, ["run", "name", "status", "phase", "params", "epochs", "best_val_accuracy", "best_epoch",
                        "test_accuracy", "seconds_per_epoch", "tags", "status_note"])


def _leaderboard(args) -> None:
    lab = _lab()
    board = lab.leaderboard(where=args.filter, archived=args.archived)
    table = lab.group_seeds(board) if args.group_seeds else board
    empty = NO_MATCH if args.filter else "no finished run yet" if args.group_seeds and not board.empty else NO_RUNS
    if _printed(table, args.json, empty):
        return
    if args.group_seeds:
        cols = ["label", "data_source", "runs", "best_val_accuracy_mean", "best_val_accuracy_std", "best_val_accuracy_min",
                "best_val_accuracy_max", "test_accuracy_mean", "test_accuracy_std", "test_accuracy_min", "test_accuracy_max"]
    else:
        cols = ["run", "name", "status", "data_source", "seed", "epochs", "best_val_accuracy", "test_accuracy", "config"]
        cols += ["vs_baseline", "baseline_verdict"] if "vs_baseline" in table else []
    _board_text(table, [*cols, "tags"])


def _show(args) -> None:
    from cifar_core.jobs.results import system_line

    detail = _lab().run(args.run_id)
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
        print(system_line(detail.system_summary, len(detail.history)))


def _cancel(args) -> None:
    state = _lab().cancel(args.job_id)
    print(f"job {args.job_id}: {state}" + (" (stop requested; it stops within seconds)" if state == "running" else ""))


def _retry(args) -> None:
    _lab().retry(args.job_id)
    print(f"job {args.job_id}: queued again; it resumes from its last finished epoch")


def _tag(args, remove: bool = False) -> None:
    lab = _lab()
    if args.seed_group:
        tags = lab.tag_group(args.seed_group, args.items, remove=remove)
        print(f"seed group {args.seed_group}: {'removed' if remove else 'tagged'} {', '.join(tags)}")
        return
    run, tags = _run_then(args.items, "tags")
    tags = (lab.untag if remove else lab.tag)([run], tags)
    print(f"run {run}: {'removed' if remove else 'tagged'} {', '.join(tags)}")


def _run_then(items: list[str], what: str) -> tuple[int, list[str]]:
    """The run id first of `items`, then the rest; LabError when the id is not one."""
    try:
        run = _id(items[0])
    except argparse.ArgumentTypeError as exc:
        raise LabError(f"{exc}: give the run id first, then the {what} (or --seed-group CONFIG)") from None
    if len(items) < 2 and what == "tags":
        raise LabError(f"no tag given after run {run}; e.g. `tag {run} muon baseline-candidate`")
    return run, items[1:]


def _note(args) -> None:
    lab = _lab()
    if args.seed_group:
        lab.set_group_note(args.seed_group, " ".join(args.items))
        print(f"seed group {args.seed_group}: note saved")
        return
    run, words = _run_then(args.items, "note")
    lab.set_note(run, " ".join(words))
    print(f"run {run}: note {'saved' if words else 'removed'}")


def _archive(args) -> None:
    _lab().archive(args.run_ids)
    print(f"archived {_ids(args.run_ids)}; `runs --archived` still lists them")


def _unarchive(args) -> None:
    _lab().unarchive(args.run_ids)
    print(f"shown again: {_ids(args.run_ids)}")


def _delete(args) -> None:
    for warning in _lab().delete(args.run_ids, force=args.force):
        print(f"warning: {warning}", file=sys.stderr)
    print(f"moved {_ids(args.run_ids)} to the trash; `undelete` brings them back until `empty-trash`")


def _undelete(args) -> None:
    _lab().restore_run(args.run_ids)
    print(f"restored {_ids(args.run_ids)} from the trash")


def _trash(args) -> None:
    import time

    found = _lab().trash()
    if not found:
        print("the trash is empty")
    for r in found:
        print(f"run {r.run} {r.name}: deleted {time.strftime('%Y-%m-%d %H:%M', time.localtime(r.trashed_at))}, files in {r.folder}")


def _empty_trash(args) -> None:
    gone = _lab().empty_trash()
    print(f"removed {_ids(gone)} for good" if gone else "the trash was empty")


def _baseline(args) -> None:
    lab = _lab()
    if args.clear or args.run_id is not None:
        lab.set_baseline(None if args.clear else args.run_id)
    pinned = lab.baseline()
    print(f"baseline: run {pinned}" if pinned is not None else "no baseline pinned; `baseline RUN` pins one")


def _ids(ids) -> str:
    return "runs " + ", ".join(map(str, ids))


def _backup(args) -> None:
    print(f"backed up to {_lab().backup()}")


def _restore(args) -> None:
    from pathlib import Path

    used, kept = _lab().restore(Path(args.backup) if args.backup else None)
    print(f"restored the store from {used}" + (f"; the store it replaced is kept as {kept}" if kept else ""))


def _data_info(args) -> None:
    from cifar_core.data.dataset import dataset_info
    from cifar_core.data.sources import load_dataset

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


def _measure(args) -> None:
    m = _lab().measure_here(args.run_ids, rounds=args.rounds, repeats=args.repeats)
    if args.json:
        print(json.dumps(m.to_dict(), indent=2))
        return
    for r in m.runs:
        print(f"run {r.run}: p50 {r.p50_ms:.2f} ms ± {r.spread_pct:.0f}% (spread of {m.rounds} rounds), "
              f"p95 {r.p95_ms:.2f} ms at batch 1, {r.throughput_ips:,.0f} images/s at batch 256, "
              f"{r.macs:,} multiply-adds per image, model file {r.model_bytes:,} bytes")
    load = "unreadable" if m.other_load is None else f"{m.other_load:.2f} cores used by other processes"
    flag = " (measured while busy: re-measure on a quiet machine)" if m.busy else ""
    print(f"load: {load}{flag}; stored as latency session {m.session}")


def _export(args) -> None:
    result = _lab().export_here(args.run_id, args.out, args.name, args.version)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return
    print(f"exported run {args.run_id} as {result.name} version {result.version} "
          f"(each format loaded back and checked on {result.sample_size} test images):")
    for f in result.formats:
        print(f"  {f.format:12} {f.path}  {f.size_bytes:,} bytes  agreement {f.agreement:.0%}")
    print(f"TF Serving: --model_name={result.name} --model_base_path={result.serving_base}")


def _choose(args) -> None:
    from cifar_core.config import resolve_source

    made = _lab().choose(resolve_source(args.data) if args.data else None)
    if args.json:
        print(json.dumps({
            "source": made.source,
            "candidates": json.loads(made.candidates.to_json(orient="records")),
            "recommendation": made.recommendation.to_dict() if made.recommendation else None,
        }, indent=2))
        return
    if made.recommendation is None:
        print("no finished run yet: `python -m cifar_core submit exp5` enqueues one")
        return
    cols = ["rank", "label", "run", "runs", "test_accuracy", "params", "macs", "model_bytes", "latency_p50_ms",
            "latency_spread_pct", "latency_p95_ms", "throughput_ips", "measured_load", "gap", "pareto", "eligible", "why"]
    print(made.candidates[cols].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print()
    print(made.recommendation.text)


def _reproduce(args) -> int:
    result = _lab().reproduce(args.data, args.out, args.epochs_scale, args.epochs,
                              progress=lambda line: print(line, flush=True), timeout=args.timeout, seeds=args.seeds)
    print(f"report: {result.markdown}\nhtml:   {result.html}")
    if result.failed:
        print(f"error: jobs {', '.join(map(str, result.failed))} did not succeed; see the report", file=sys.stderr)
        return 1
    return 0


def _audit(args) -> None:
    table = _lab().audit(args.user, args.limit)
    if _printed(table, args.json, "no record yet: a lab records who did what only while a login is configured "
                "(README, Sharing the dashboard)"):
        return
    table["at"] = table["at"].dt.strftime("%Y-%m-%d %H:%M:%S")
    table["run_id"] = table["run_id"].map(lambda r: "-" if r != r or r is None else str(int(r)))
    print(table[["at", "user", "role", "action", "run_id", "run_name", "detail"]].to_string(index=False, na_rep="-"))


def _report(args) -> None:
    md_path, html_path = _lab().write_report(args.group, args.out, args.reference_epoch)
    print(f"report: {md_path}\nhtml:   {html_path}")


COMMANDS = {
    "presets": _presets, "summary": _summary, "submit": _submit, "sweep": _sweep, "sweep-replay": _sweep_replay,
    "sweep-stop": _sweep_stop, "sweep-resume": _sweep_resume, "sweep-report": _sweep_report, "refit": _refit,
    "worker": _worker, "runs": _runs,
    "leaderboard": _leaderboard, "show": _show, "cancel": _cancel, "retry": _retry, "backup": _backup, "restore": _restore, "data-info": _data_info,
    "measure": _measure, "export": _export,
    "tag": _tag, "untag": lambda a: _tag(a, remove=True), "note": _note, "archive": _archive, "unarchive": _unarchive,
    "delete": _delete, "undelete": _undelete, "trash": _trash, "empty-trash": _empty_trash, "baseline": _baseline,
    "choose": _choose, "reproduce": _reproduce, "report": _report, "audit": _audit,
}
