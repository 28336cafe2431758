"""The real encoder: the bundled model, offline, end to end through the command line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from qa.cli import main
from qa.encoder import DEFAULT_MODEL, SentenceTransformerEncoder, resolve_model_location
from qa.index import PassageIndex

QUESTION = "Why do defectors return to North Korea?"
THREE_GROUPS = "could be classified into three broad groups"


def test_default_model_resolves_to_the_bundled_folder() -> None:
    location = Path(resolve_model_location(DEFAULT_MODEL))
    assert (location / "model.safetensors").is_file()
    assert resolve_model_location("all-MiniLM-L6-v2") == str(location)
    assert resolve_model_location("someone/other-model") == "someone/other-model"


def test_window_and_token_counter_come_from_the_model_folder() -> None:
    encoder = SentenceTransformerEncoder()
    assert encoder.max_tokens() == 254  # 256 less [CLS] and [SEP]
    count = encoder.token_counter()
    assert count is not None
    assert count("defectors") > 1  # word pieces, not words
    assert count("the cat sat") == 3


@pytest.mark.slow
def test_real_model_embeds_offline_with_unit_vectors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    vectors = SentenceTransformerEncoder().encode(
        ["Defectors return home.", "Why do defectors go back?", "Bread recipe"]
    )
    assert vectors.shape == (3, 384)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    assert unit[0] @ unit[1] > unit[0] @ unit[2]


@pytest.mark.slow
def test_end_to_end_finds_the_three_groups_paragraph(
    corpus_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("QA_MODEL", raising=False)
    index_dir = tmp_path / "index"
    assert main(["index", "--corpus", str(corpus_copy), "--index", str(index_dir)]) == 0
    capsys.readouterr()
    assert main(["search", QUESTION, "--k", "3", "--json", "--index", str(index_dir)]) == 0
    hits = json.loads(capsys.readouterr().out)["hits"]
    top = [hit for hit in hits if THREE_GROUPS in hit["text"]]
    assert top, [hit["text"][:80] for hit in hits]
    assert (top[0]["outlet"], top[0]["title"]) == ("The Korea Times", "Why do NK defectors flee to destitute North?")

    index = PassageIndex.load(index_dir)
    count = SentenceTransformerEncoder().token_counter()
    assert count is not None
    assert max(count(p.text) for p in index.passages) <= index.manifest.settings.max_tokens
