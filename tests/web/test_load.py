"""benchmarks/load.py: it loads this machine's app only, and spreads the questions over its clients."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

import pytest

from conftest import REPO


@pytest.fixture(scope="module")
def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("load_benchmark", REPO / "benchmarks" / "load.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while being made
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:7860", "http://127.0.0.2:8000/", "http://localhost:7860/", "http://[::1]:7860/"]
)
def test_loopback_urls_are_accepted(load: ModuleType, url: str) -> None:
    assert load.loopback_url(url).rstrip("/") == url.rstrip("/")


@pytest.mark.parametrize(
    "url", ["http://0.0.0.0:7860/", "http://192.168.1.10:7860/", "https://example.org/", "http://127.0.0.1.nip.io/"]
)
def test_other_hosts_are_refused(load: ModuleType, url: str) -> None:
    with pytest.raises(SystemExit, match="only loopback addresses"):
        load.loopback_url(url)


def test_every_question_is_asked_and_clients_start_apart(load: ModuleType) -> None:
    questions = load.load_questions()
    batches = [load.questions_for(client, 20, questions) for client in range(50)]
    assert {question for batch in batches for question in batch} == set(questions)
    assert len({batch[0] for batch in batches}) > 10
