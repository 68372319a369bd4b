"""Time loading the real CIFAR-10 images: cold (decode + write cache), then cached, each in a new process.

Usage: .venv/bin/python scripts/bench_data.py [SOURCE]   (default ../shared/datasets/cifar10-jpeg.tar.gz)
Uses a fresh temporary CIFAR_LAB_HOME, so nothing under ~/ is touched and the first load is really cold.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from _bootstrap import ROOT  # the checkout, put on sys.path

DEFAULT_SOURCE = ROOT.parent / "shared" / "datasets" / "cifar10-jpeg.tar.gz"


def child(source: str) -> None:
    """Load once (and again, from the in-process memo) and print the timings as JSON."""
    from cifar_core.data.sources import cache_file, load_dataset

    start = time.perf_counter()
    ds = load_dataset(source)
    first = time.perf_counter() - start
    start = time.perf_counter()
    load_dataset(source)
    memo = time.perf_counter() - start
    print(json.dumps({
        "seconds": first,
        "memo_seconds": memo,
        "train": list(ds.x_train.shape),
        "test": list(ds.x_test.shape),
        "cache_mb": cache_file(source).stat().st_size / 1e6,
    }))


def run(source: str, home: str) -> dict:
    env = {**os.environ, "CIFAR_LAB_HOME": home}
    out = subprocess.run(
        [sys.executable, __file__, "--child", source], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", nargs="?", default=str(DEFAULT_SOURCE), help="data source (default: %(default)s)")
    source = parser.parse_args().source
    with tempfile.TemporaryDirectory(prefix="cifar-bench-") as home:
        cold = run(source, home)
        cached = run(source, home)
    print(f"source       {source}")
    print(f"arrays       train {cold['train']}  test {cold['test']}  cache file {cold['cache_mb']:.0f} MB")
    print(f"cold load    {cold['seconds']:.2f} s   (decode + write cache, new process)")
    print(f"cached load  {cached['seconds']:.2f} s   (read cache, new process)")
    print(f"memo load    {cached['memo_seconds'] * 1000:.2f} ms (same process again)")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(sys.argv[2])
    else:
        main()
