"""Seconds from starting `app.py` to HTTP 200, for two or more checkouts started in turns on one index.

Each round starts every checkout's app once, one after another (as `bench.py`'s `app_ready_s`
times one), so that a machine whose speed drifts slows them alike. The index must be built and
up to date with the corpus (the seed corpus unless ``--corpus`` names another), so that no start
rebuilds it:

    .venv/bin/python benchmarks/app_start_in_turns.py INDEX_DIR OLD_CHECKOUT NEW_CHECKOUT [--rounds 5] [--corpus DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def ready_seconds(checkout: Path, index_dir: Path, corpus: Path) -> float:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, str(checkout / "app.py"), "--corpus", str(corpus), "--index", str(index_dir)]
    environment = {**os.environ, "PYTHONPATH": str(checkout / "src")}
    started = time.perf_counter()
    app = subprocess.Popen(
        [*command, "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=environment
    )
    try:
        while app.poll() is None:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1).close()
                return round(time.perf_counter() - started, 2)
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"app.py of {checkout} exited before it served")
    finally:
        app.terminate()
        app.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("index", type=Path)
    parser.add_argument("checkouts", type=Path, nargs="+")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--corpus", type=Path, default=REPO / "corpus")
    args = parser.parse_args()
    seconds: dict[str, list[float]] = {str(checkout): [] for checkout in args.checkouts}
    for _ in range(args.rounds):
        for checkout in args.checkouts:
            seconds[str(checkout)].append(
                ready_seconds(checkout.resolve(), args.index.resolve(), args.corpus.resolve())
            )
    print(json.dumps({checkout: sorted(times) for checkout, times in seconds.items()}))


if __name__ == "__main__":
    main()
