"""Many users at once: concurrent clients asking the app's `search` API, optionally during rebuilds.

    .venv/bin/python benchmarks/load.py              # start app.py, 50 clients x 20 questions
    .venv/bin/python benchmarks/load.py --rebuild    # the same while the app rebuilds its index
    .venv/bin/python benchmarks/load.py --url http://127.0.0.1:7860/   # a running app

Without ``--url`` it starts ``app.py`` on a free loopback port with a fresh index
in a temporary folder and stops it at the end. Only loopback addresses are
accepted: this is a load generator, and it must not be pointed at anyone else's
server. Every request has a timeout and the whole run a deadline, so it always
stops by itself.

Each client asks its questions (from ``eval/questions.jsonl``) one after another
through Gradio's HTTP API (``POST /gradio_api/call/search``, then the event's
result stream); the clients run concurrently. With ``--rebuild``, full index
rebuilds (the Corpus tab's "Rebuild index", API name ``rebuild``, which clears
the embedding cache and embeds every passage again) run back to back for the
whole time the clients ask. Prints a summary and stores it in
``benchmarks/results/load.json`` under ``steady`` or ``during_rebuild``.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
QUESTIONS = REPO / "eval" / "questions.jsonl"
RESULTS = REPO / "benchmarks" / "results" / "load.json"
REQUEST_TIMEOUT = 120.0  # seconds for one question, queueing included
STARTUP_TIMEOUT = 300.0  # app.py builds the index on first start
RUN_DEADLINE = 1800.0  # the whole load, whatever happens


@dataclass
class Outcome:
    """What the clients saw: one latency per answered question, one message per failure."""

    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@dataclass
class RebuildLog:
    """Rebuilds run during the load: seconds each, and the app's message for each."""

    seconds: list[float] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def loopback_url(url: str) -> str:
    """``url`` with a trailing slash, if its host is this machine; otherwise exit with a message."""
    host = urllib.parse.urlsplit(url).hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name other than localhost: never resolved, never loaded
        loopback = False
    if not loopback:
        raise SystemExit(f"load.py: refusing {url!r}: only loopback addresses (127.0.0.1, ::1, localhost)")
    return url if url.endswith("/") else url + "/"


def load_questions(path: Path = QUESTIONS) -> list[str]:
    return [json.loads(line)["question"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def questions_for(client: int, count: int, questions: list[str]) -> list[str]:
    """``count`` questions for one client, each client starting at a different place in the list.

    The stride is one more than ``count``, so the starts do not repeat every few clients when the
    list is a multiple of ``count`` long (80 questions, 20 each).
    """
    start = client * (count + 1)
    return [questions[(start + i) % len(questions)] for i in range(count)]


async def call(http: Any, url: str, api: str, data: list[Any]) -> tuple[str, Any]:
    """One Gradio API call: join the queue, then read the event's stream to its end.

    Returns the final event's name (``complete`` or ``error``) and its data.
    """
    joined = await http.post(f"{url}gradio_api/call/{api}", json={"data": data})
    joined.raise_for_status()
    event_id = joined.json()["event_id"]
    event, payload = "", None
    async with http.stream("GET", f"{url}gradio_api/call/{api}/{event_id}") as stream:
        stream.raise_for_status()
        async for line in stream.aiter_lines():
            if line.startswith("event:"):
                event = line.removeprefix("event:").strip()
            elif line.startswith("data:") and event in {"complete", "error"}:
                payload = json.loads(line.removeprefix("data:").strip())
                return event, payload
    return event or "closed", payload


async def ask_all(http: Any, url: str, questions: list[str], outcome: Outcome) -> None:
    """One client: its questions one after another, each timed from request to answer."""
    for question in questions:
        started = time.perf_counter()
        try:
            event, payload = await asyncio.wait_for(call(http, url, "search", [question, 5, "hybrid"]), REQUEST_TIMEOUT)
        except Exception as error:  # any failure is counted, and the client goes on
            outcome.errors.append(f"{question[:40]!r}: {type(error).__name__}: {error}")
            continue
        answer = payload[0] if event == "complete" and payload else None
        if not isinstance(answer, dict) or answer.get("query") != question or not answer.get("hits"):
            outcome.errors.append(f"{question[:40]!r}: {event}: {str(payload)[:200]}")
            continue
        outcome.latencies.append(time.perf_counter() - started)


async def rebuild_until(http: Any, url: str, done: asyncio.Event, log: RebuildLog) -> None:
    """Full rebuilds back to back until ``done`` is set."""
    while not done.is_set():
        started = time.perf_counter()
        try:
            event, payload = await asyncio.wait_for(call(http, url, "rebuild", []), REQUEST_TIMEOUT)
        except Exception as error:
            log.errors.append(f"{type(error).__name__}: {error}")
            continue
        message = payload[2] if event == "complete" and payload else f"{event}: {payload}"
        (log.messages if str(message).startswith("Rebuilt") else log.errors).append(str(message))
        log.seconds.append(time.perf_counter() - started)


async def run_load(url: str, clients: int, per_client: int, rebuild: bool) -> tuple[Outcome, RebuildLog, float]:
    """Run every client concurrently (and the rebuilds, if asked); the outcome, rebuild log and wall seconds."""
    import httpx

    questions = load_questions()
    outcome, log, done = Outcome(), RebuildLog(), asyncio.Event()
    limits = httpx.Limits(max_connections=clients + 4)
    async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT, limits=limits) as http:
        await call(http, url, "search", [questions[0], 5, "hybrid"])  # the model is loaded before timing
        rebuilder = asyncio.create_task(rebuild_until(http, url, done, log)) if rebuild else None
        started = time.perf_counter()
        tasks = [ask_all(http, url, questions_for(c, per_client, questions), outcome) for c in range(clients)]
        await asyncio.wait_for(asyncio.gather(*tasks), RUN_DEADLINE)
        seconds = time.perf_counter() - started
        done.set()
        if rebuilder is not None:
            await asyncio.wait_for(rebuilder, REQUEST_TIMEOUT)
    return outcome, log, seconds


def summary(outcome: Outcome, log: RebuildLog, seconds: float, asked: int) -> dict[str, Any]:
    milliseconds = np.array(outcome.latencies) * 1000 if outcome.latencies else np.zeros(1)
    result: dict[str, Any] = {
        "questions": asked,
        "answered": len(outcome.latencies),
        "errors": len(outcome.errors),
        "seconds": round(seconds, 1),
        "questions_per_s": round(len(outcome.latencies) / seconds, 2),
        "latency_ms": {f"p{q}": round(float(np.percentile(milliseconds, q)), 1) for q in (50, 95, 99)},
        "first_errors": outcome.errors[:5],
    }
    if log.seconds or log.errors:
        result["rebuilds"] = {
            "completed": len(log.messages),
            "failed": len(log.errors),
            "seconds_each": [round(s, 2) for s in log.seconds],
            "last_message": log.messages[-1] if log.messages else "",
            "first_errors": log.errors[:5],
        }
    return result


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until_serving(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"load.py: app.py exited with status {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"load.py: app.py did not serve {url} within {STARTUP_TIMEOUT:.0f} s")


@contextmanager
def started_app() -> Iterator[str]:
    """``app.py`` on a free loopback port with a fresh index of ``corpus/``; stopped on the way out."""
    with tempfile.TemporaryDirectory(prefix="qa-load-") as workdir:
        port = free_port()
        command = [sys.executable, str(REPO / "app.py"), "--port", str(port), "--index", str(Path(workdir) / "index")]
        environment = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
        log = (Path(workdir) / "app.log").open("wb")
        process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=environment)
        try:
            url = f"http://127.0.0.1:{port}/"
            wait_until_serving(url, process)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
            log.close()


def store(result: dict[str, Any], key: str, path: Path) -> None:
    """Put ``result`` under ``key`` in the JSON file, keeping the other runs already there."""
    stored = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    stored[key] = result
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(stored, indent=2) + "\n", encoding="utf-8")


def measure(url: str, args: argparse.Namespace) -> dict[str, Any]:
    outcome, log, seconds = asyncio.run(run_load(url, args.clients, args.questions, args.rebuild))
    result = summary(outcome, log, seconds, args.clients * args.questions)
    result.update(
        clients=args.clients,
        questions_per_client=args.questions,
        cpus=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        measured_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="a running app on this machine (default: start app.py)")
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients (default: 50)")
    parser.add_argument("--questions", type=int, default=20, help="questions per client (default: 20)")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the index over and over during the load")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"results file (default: {RESULTS})")
    args = parser.parse_args()
    if args.url:
        result = measure(loopback_url(args.url), args)
    else:
        from qa.web.ui import ANSWER_CONCURRENCY

        with started_app() as url:
            result = measure(url, args)
        result["answer_concurrency"] = ANSWER_CONCURRENCY  # the app started here is this checkout's
    store(result, "during_rebuild" if args.rebuild else "steady", args.out)
    print(json.dumps(result, indent=2))
    failed = result["errors"] + result.get("rebuilds", {}).get("failed", 0)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
