"""The reader's network in torch: a MiniLM encoder with a span head and an answerability head.

Used to train the reader (``training/reader.py``) and to export it once to OpenVINO; answering
questions never imports torch. The input is ``[CLS] question [SEP] passage [SEP]``; the span
head gives start and end logits per token (SQuAD 2.0 style, with ``[CLS]`` standing for "no
answer"), and the answerability head reads ``[CLS]`` and says whether the passage answers the
question at all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

# Parameters that are not trained and not shipped: taken from the bundled encoder at load time.
FROZEN_PREFIX = "encoder.embeddings.word_embeddings."


class ReaderNetwork(nn.Module):
    """MiniLM (BERT) with two small heads: start/end logits per token, one answerability logit."""

    def __init__(self, encoder: Any) -> None:
        super().__init__()
        self.encoder = encoder
        width = int(encoder.config.hidden_size)
        self.span = nn.Linear(width, 2)
        self.answerable = nn.Linear(width, 1)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Start logits, end logits (both (batch, tokens)) and answerability logits (batch,)."""
        hidden = self.encoder(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state
        span = self.span(hidden)
        return span[..., 0], span[..., 1], self.answerable(hidden[:, 0]).squeeze(-1)


def base_network(model_folder: Path) -> ReaderNetwork:
    """A fresh reader on top of the sentence-transformers model in ``model_folder`` (its BERT weights)."""
    from transformers import AutoModel

    encoder = AutoModel.from_pretrained(str(model_folder), attn_implementation="eager")
    network = ReaderNetwork(encoder)
    network.encoder.embeddings.word_embeddings.weight.requires_grad_(False)
    return network


def shipped_state(network: ReaderNetwork) -> dict[str, torch.Tensor]:
    """The weights to ship, in float16: everything but the frozen word embeddings."""
    return {
        name: tensor.detach().to(torch.float16).contiguous()
        for name, tensor in network.state_dict().items()
        if not name.startswith(FROZEN_PREFIX)
    }


def word_embeddings_digest(network: ReaderNetwork) -> str:
    """SHA-256 of the frozen word-embedding matrix (float32 bytes): the shipped weights fit only these."""
    import hashlib

    matrix = network.encoder.embeddings.word_embeddings.weight.detach().to(torch.float32).contiguous()
    return hashlib.sha256(matrix.numpy().tobytes()).hexdigest()


def write_trained(
    network: ReaderNetwork,
    folder: Path,
    *,
    name: str,
    base_model: str,
    max_tokens: int,
    stride: int,
    max_question_tokens: int,
    training: dict[str, Any],
) -> None:
    """Write the shipped reader into ``folder``: ``reader.safetensors`` (float16) and ``reader.json``."""
    import json

    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file(shipped_state(network), str(folder / "reader.safetensors"))
    description = {
        "name": name,
        "base_model": base_model,
        "word_embeddings_sha256": word_embeddings_digest(network),
        "max_tokens": max_tokens,
        "stride": stride,
        "max_question_tokens": max_question_tokens,
        "format": 1,
        "training": training,
    }
    (folder / "reader.json").write_text(json.dumps(description, indent=2) + "\n", encoding="utf-8")
