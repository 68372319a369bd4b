"""A walk through every page of the running app in a real Chromium, as an analyst would: a full-page
screenshot of each (to look at), its text (to compare numbers across pages), and the dashboard
server's memory after each page; on Predict, an upload and the time until its prediction shows; on
Model choice, an export.

    CIFAR_LAB_HOME=... CIFAR_LAB_DATA=... .venv/bin/python scripts/walk_pages.py --out DIR [--upload IMG]

The app is started as the README says (`make run`, which starts a worker if none is alive) on a free
port and stopped at the end; the lab's worker is left running (it may still be training).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from pathlib import Path

from _bootstrap import ROOT

from cifar_core.testing.appserver import CHROMIUM, CHROMIUM_ARGS, start_app, stop_app, wait_healthy
from cifar_core.testing.procs import free_port

PAGES = ["Dataset", "Builder", "Training", "Sweeps", "Leaderboard", "Run", "Error analysis", "Model choice", "Predict"]
MS = 1000


def server_rss_mb(app_pid: int) -> float | None:
    """Resident memory of the Streamlit server (the Python process, not make's shell) in the app's
    process group."""
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().split(b"\0")
            if b"streamlit" in cmd and b"app.py" in cmd and os.getpgid(int(d.name)) == app_pid:
                rss = re.search(r"VmRSS:\s+(\d+) kB", (d / "status").read_text())
                found.append(int(rss.group(1)) / 1024 if rss else 0.0)
        except (OSError, ProcessLookupError):
            continue
    return max(found, default=None)


def idle(page) -> None:
    page.wait_for_function("""() => !document.querySelector('[data-testid="stStatusWidget"]')
                                    && !document.querySelector('[data-stale="true"]')""", timeout=120 * MS)


def visit(page, title: str) -> None:
    page.get_by_test_id("stSidebarNav").get_by_text(title, exact=True).click()
    page.locator("h1").filter(has_text=title).first.wait_for()
    idle(page)
    page.wait_for_timeout(1500)  # charts draw after the run settles
    idle(page)


def predict_upload(page, image: Path) -> float:
    """Seconds from choosing the file until the page shows a prediction."""
    started = time.monotonic()
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(image))
    page.locator('[data-testid="stPlotlyChart"]').first.wait_for(timeout=120 * MS)
    idle(page)
    return time.monotonic() - started


def export_first(page) -> float:
    started = time.monotonic()
    page.locator(".st-key-choice_export button").click()
    page.locator(".st-key-choice_download_keras").wait_for(timeout=300 * MS)  # the export's own files
    idle(page)
    return time.monotonic() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--upload", type=Path, help="an image to upload on Predict")
    ap.add_argument("--export", action="store_true", help="export the first candidate on Model choice")
    ap.add_argument("--prefix", default="", help="screenshot name prefix (several walks into one folder)")
    ap.add_argument("--release", type=Path, help="with $CIFAR_LAB_PACE holding a job (hold=PHASE:EPOCH:STEP,"
                    "release=DIR): wait on the Training page until it shows the held phase, then release it (a "
                    "file DIR/PHASE-EPOCH-STEP) once the page is captured")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    args.out.mkdir(parents=True, exist_ok=True)
    port, log = free_port(), args.out / "app.log"
    proc = start_app(ROOT, port, dict(os.environ), log)
    figures: dict = {"rss_mb": {}}
    try:
        wait_healthy(port, proc, log)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            # Streamlit scrolls inside its main block, so a full-page screenshot shows one screen: a
            # tall window shows the whole page
            page = browser.new_page(viewport={"width": 1500, "height": 4000})
            page.set_default_timeout(120 * MS)
            page.goto(f"http://127.0.0.1:{port}")
            idle(page)
            for i, title in enumerate(PAGES):
                visit(page, title)
                if title == "Training" and args.release:
                    phase = os.environ["CIFAR_LAB_PACE"].split("hold=")[1].split(":")[0]
                    page.get_by_text(re.compile(phase)).first.wait_for(timeout=1800 * MS)
                    page.wait_for_timeout(4000)  # the page's own refresh draws the held state
                    idle(page)
                if title == "Predict" and args.upload:
                    figures["predict_seconds"] = round(predict_upload(page, args.upload), 2)
                if title == "Model choice" and args.export:
                    figures["export_seconds"] = round(export_first(page), 2)
                stem = f"{args.prefix}{i:02d}-{title.replace(' ', '_').lower()}"
                page.screenshot(path=args.out / f"{stem}.png", full_page=True)
                (args.out / f"{stem}.txt").write_text(page.locator("section.main, [data-testid='stMain']").first.inner_text())
                figures["rss_mb"][title] = round(server_rss_mb(proc.pid) or -1, 1)
                print(title, figures["rss_mb"][title], "MB", flush=True)
                if title == "Training" and args.release:
                    hold = os.environ["CIFAR_LAB_PACE"].split("hold=")[1].split(",")[0].replace(":", "-")
                    args.release.mkdir(parents=True, exist_ok=True)
                    (args.release / hold).touch()
            browser.close()
    finally:
        stop_app(proc)
    (args.out / f"{args.prefix}figures.json").write_text(json.dumps(figures, indent=1))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
