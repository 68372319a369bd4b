"""Memory of the lab's long-lived processes at rest (issue 14, item 8): an idle worker, and the
Streamlit server after every page has been opened once in a real browser.

    .venv/bin/python scripts/bench_idle.py [--data SOURCE] [--skip-worker] [--skip-server]

(a) starts `python -m cifar_core worker` in a new temp home, reads its VmRSS once it has
    registered, has it train one tiny job (1 epoch), and reads VmRSS again when it is idle;
(b) starts `streamlit run app.py` (no background worker) on a free port over the same home (so
    the run pages have a finished run to show), opens every page once in Chromium through the
    sidebar, uploads an image on Predict and exports the chosen run on Model choice, and reads the
    server's VmRSS after each page and each of those two (and the model helper's, which the server
    starts for them: TensorFlow lives there, never in the server), with the upload's time to its
    answer.

Default data: a small generated JPEG archive laid out like cifar10-jpeg.tar.gz; --data uses a
real source (the first load then decodes it into the temp home's cache, as a cold server does).
Memory is not timing: the figures hold on a busy machine. Prints PASS/FAIL against the targets
and exits 1 if any failed. The server maps the cached dataset: each image a page reads brings in
the page-cache block around it (recent kernels map whole large folios, up to megabytes), so the
Dataset page adds ~70 MB of shared, file-backed RSS on the real set, not a copy of its 184 MB.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _bootstrap import ROOT  # the checkout, put on sys.path

from cifar_core.testing.appserver import CHROMIUM, CHROMIUM_ARGS, start_server, stop_app, tail, terminate

TARGET_WORKER_MB = 400  # an idle worker, before and after a job
TARGET_SERVER_MB = 450  # the server after every page has been opened once, an upload and an export
MS = 1000  # Playwright takes milliseconds


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """A /proc/<pid>/status memory figure (VmRSS: resident now; VmHWM: the peak) in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024  # the kernel writes kB
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


def verdict(mb: float, target: float) -> str:
    return f"{mb:7.0f} MB  (target <= {target} MB: {'PASS' if mb <= target else 'FAIL'})"


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")


# ------------------------------------------------------------------ (a) the worker


def bench_worker(home: Path, data: str) -> list[float]:
    """RSS of an idle worker after it registered and after one tiny job; the job's run stays in
    the store for the server's pages."""
    from cifar_core.testing.datagen import tiny_spec

    from cifar_core.jobs import queue, store, worker
    from cifar_core.lab import Lab

    log = home / "bench-worker.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "cifar_core", "worker", "--threads", "1"], cwd=ROOT,
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    conn = store.connect()
    try:
        wait_for(lambda: proc.poll() is not None or store.worker_registered(conn, proc.pid), 120, "the worker to register")
        if proc.poll() is not None:
            raise SystemExit(f"the worker exited {proc.returncode}:\n{tail(log)}")
        time.sleep(3)  # past its first idle polls
        started = rss_mb(proc.pid)
        print(f"worker pid {proc.pid} idle after start:    {verdict(started, TARGET_WORKER_MB)}", flush=True)
        [job_id] = Lab().submit(tiny_spec(epochs=1, name="bench-idle"), data).job_ids
        job = wait_for(lambda: (j := queue.get_job(conn, job_id)).state in queue.TERMINAL and j, 900,
                       f"job {job_id} to finish")
        wait_for(lambda: all(w.current_job is None for w in worker.list_workers(conn)), 60, "the worker to be idle")
        time.sleep(3)
        after = rss_mb(proc.pid)
        print(f"worker pid {proc.pid} idle after job {job_id} ({job.state}): {verdict(after, TARGET_WORKER_MB)}"
              f"  peak {rss_mb(proc.pid, 'VmHWM'):.0f} MB", flush=True)
        if job.state != queue.SUCCEEDED:
            print(f"  the job did not succeed ({job.error}); the run pages will have no model to show")
        return [started, after]
    finally:
        conn.close()
        terminate([proc.pid])


# ------------------------------------------------------------------ (b) the server


def page_titles() -> list[str]:
    """Every page's sidebar title, in app.py's order (read from its st.Page calls without running it)."""
    import re

    return re.findall(r'st\.Page\("pages/\w+\.py", title="([^"]+)"', (ROOT / "app.py").read_text())


def _idle(page) -> None:
    """No script run in flight (see tests/test_browser.py: status widget gone, nothing stale)."""
    page.wait_for_function("""() => !document.querySelector('[data-testid="stStatusWidget"]')
                                    && !document.querySelector('[data-stale="true"]')""", timeout=600 * MS)


def bench_server(home: Path, data: str) -> float:
    from playwright.sync_api import sync_playwright

    log = home / "bench-server.log"
    proc, port = start_server(ROOT, home, data, log)
    peak = 0.0
    try:
        print(f"server pid {proc.pid} started:             {rss_mb(proc.pid):7.0f} MB", flush=True)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.set_default_timeout(600 * MS)
                page.goto(f"http://127.0.0.1:{port}/")
                for i, title in enumerate(page_titles()):
                    started = time.monotonic()
                    if i:  # the first is the default page, already open
                        page.get_by_test_id("stSidebarNav").get_by_text(title, exact=True).click()
                    page.locator("h1").filter(has_text=title).wait_for()
                    _idle(page)
                    page.wait_for_timeout(1000)  # images and charts arrive after the run
                    _idle(page)
                    seconds = time.monotonic() - started
                    print(f"  after {title:16} {rss_mb(proc.pid):7.0f} MB  ({seconds:.0f} s)", flush=True)
                    peak = max(peak, rss_mb(proc.pid))
                    if title in ACTIONS:
                        started = time.monotonic()
                        ACTIONS[title](page, home)
                        _idle(page)
                        seconds = time.monotonic() - started
                        print(f"  after {title + ' ' + ACTION_NAMES[title]:28} {rss_mb(proc.pid):7.0f} MB  ({seconds:.1f} s)"
                              f"  helper {_helper_mb(proc.pid)}", flush=True)
                        peak = max(peak, rss_mb(proc.pid))
            finally:
                browser.close()
        time.sleep(2)
        rss = max(peak, rss_mb(proc.pid))  # the target holds after every page, not only at the end
        print(f"server pid {proc.pid} after every page:    {verdict(rss, TARGET_SERVER_MB)}"
              f"  peak {rss_mb(proc.pid, 'VmHWM'):.0f} MB  tensorflow imported: {_has_tensorflow(proc.pid)}", flush=True)
        return rss
    except BaseException:
        print(f"server log:\n{tail(log)}")
        raise
    finally:
        stop_app(proc)


def _upload(page, home: Path) -> None:
    """Predict: upload a PNG and wait for its answer (the probability chart)."""
    from PIL import Image

    image = home / "bench-upload.png"
    Image.new("RGB", (640, 480), (200, 40, 40)).save(image)
    page.locator('input[type="file"]').set_input_files(str(image))
    page.locator(".js-plotly-plot").first.wait_for()


def _export(page, home: Path) -> None:
    """Model choice: export the chosen run and wait for the result."""
    page.get_by_role("button", name="Export .keras, SavedModel and .tflite").click()
    page.get_by_text("Exported").or_(page.locator('[data-testid="stAlertContentError"]')).first.wait_for()


ACTIONS = {"Predict": _upload, "Model choice": _export}
ACTION_NAMES = {"Predict": "(upload)", "Model choice": "(export)"}


def _helper_mb(server_pid: int) -> str:
    """The model helper's RSS (the server's child running `cifar_core _helper`), if it runs."""
    for child in Path(f"/proc/{server_pid}/task/{server_pid}/children").read_text().split():
        if "_helper" in Path(f"/proc/{child}/cmdline").read_bytes().decode(errors="replace"):
            return f"{rss_mb(int(child)):.0f} MB (tensorflow: {_has_tensorflow(int(child))})"
    return "not running"


def _has_tensorflow(pid: int) -> bool:
    """Whether the process mapped TensorFlow's shared library (importing tensorflow loads it)."""
    return "libtensorflow" in Path(f"/proc/{pid}/maps").read_text()


# ------------------------------------------------------------------ main


def generated_data(folder: Path) -> str:
    from cifar_core.testing.datagen import write_image_tarball

    return str(write_image_tarball(folder, n_train_per_class=100, n_test_per_class=20, fmt="jpg"))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="data source (default: a small generated JPEG archive)")
    p.add_argument("--skip-worker", action="store_true", help="measure only the server (no finished run to show)")
    p.add_argument("--skip-server", action="store_true", help="measure only the worker")
    args = p.parse_args()
    home = Path(tempfile.mkdtemp(prefix="cifar-bench-idle-"))
    os.environ.update(CIFAR_LAB_HOME=str(home), TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
    try:
        data = str(Path(args.data).expanduser().resolve()) if args.data else generated_data(home / "data")
        os.environ["CIFAR_LAB_DATA"] = data
        print(f"home {home}\ndata {data}", flush=True)
        failed = False
        if not args.skip_worker:
            failed |= max(bench_worker(home, data)) > TARGET_WORKER_MB
        if not args.skip_server:
            failed |= bench_server(home, data) > TARGET_SERVER_MB
        return 1 if failed else 0
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
