"""Train the reader: a MiniLM cross-encoder with a span head and a no-answer head, on SQuAD.

    python training/reader.py --squad ../shared/datasets/squad --out training/runs/reader

Data: the SQuAD 1.1 and 2.0 dev sets (16,515 distinct questions over 48 Wikipedia articles).
Articles are split, never questions: four dev and four test articles (all with unanswerable
questions; ``squad.held_out_articles``) are never trained on; dev chooses checkpoints, thresholds and fusion,
test is reported. Every other article trains, as three kinds of pairs:

- an answerable question with its own paragraph (answerable; the span is the answer);
- the same question with the paragraph of its article that BM25 ranks highest among the
  others (a hard negative: same topic, no answer);
- an unanswerable question with its own paragraph (written to look answerable: the
  negative a reader must learn to refuse).

The run writes ``progress.jsonl`` (loss every ``--log-every`` steps, held-out scores every
epoch), ``checkpoint/`` (weights and optimiser, every ``--checkpoint-every`` steps, in
safetensors and JSON, so a stopped run resumes with ``--resume``), and at the end ``run.json``
(seed, data, steps, time, machine) and ``model/`` (what ships: float16 weights without the frozen
word embeddings, and ``reader.json``). ``--package FOLDER`` writes ``model/`` from the last
checkpoint into FOLDER (``src/qa/reader/trained``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import re
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from squad import (
    MAX_QUESTION_TOKENS,
    MAX_TOKENS,
    STRIDE,
    Question,
    clip_question,
    encode_pairs,
    held_out_articles,
    held_out_scores,
    load_questions,
    tokenizer_of,
    training_pairs,
)

from qa.embed.models import DEFAULT_MODEL, resolve_model_location
from qa.reader.network import FROZEN_PREFIX, ReaderNetwork, base_network, write_trained
from qa.reader.spans import best_span


def batches(windows: list[dict[str, Any]], *, size: int, seed: int, pad_id: int) -> list[dict[str, torch.Tensor]]:
    """Batches of windows of similar length (less padding), in a seeded random order."""
    order = sorted(range(len(windows)), key=lambda i: len(windows[i]["input_ids"]))
    groups = [order[i : i + size] for i in range(0, len(order), size)]
    random.Random(seed).shuffle(groups)
    return [_collate([windows[i] for i in group], pad_id=pad_id) for group in groups]


def _collate(rows: list[dict[str, Any]], *, pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(row["input_ids"]) for row in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    types = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        n = len(row["input_ids"])
        input_ids[i, :n] = torch.tensor(row["input_ids"])
        types[i, :n] = torch.tensor(row["token_type_ids"])
        mask[i, :n] = 1
    return {
        "input_ids": input_ids,
        "attention_mask": mask,
        "token_type_ids": types,
        "start": torch.tensor([row["start"] for row in rows]),
        "end": torch.tensor([row["end"] for row in rows]),
        "answerable": torch.tensor([row["answerable"] for row in rows]),
    }


def loss_of(network: ReaderNetwork, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Span cross-entropy (start and end, [CLS] for no answer) plus the answerability loss."""
    with torch.autocast("cpu", dtype=torch.bfloat16):
        start, end, answerable = network(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    masked = batch["attention_mask"] == 0
    start = start.float().masked_fill(masked, -1e4)
    end = end.float().masked_fill(masked, -1e4)
    cross_entropy = torch.nn.functional.cross_entropy
    span_loss = (cross_entropy(start, batch["start"]) + cross_entropy(end, batch["end"])) / 2
    answer_loss = torch.nn.functional.binary_cross_entropy_with_logits(answerable.float(), batch["answerable"])
    return span_loss + answer_loss


# ---------------------------------------------------------------- held-out scores


@torch.inference_mode()
def evaluate(network: ReaderNetwork, tokenizer: Any, questions: list[Question]) -> dict[str, float]:
    """Exact match, F1 and no-answer accuracy on ``questions`` with their own paragraphs, and AUC of answerability."""
    network.eval()
    predictions = read_batch(network, tokenizer, [(q.question, q.context) for q in questions])
    network.train()
    return held_out_scores(questions, predictions)


def read_batch(network: ReaderNetwork, tokenizer: Any, pairs: list[tuple[str, str]]) -> list[tuple[str, float]]:
    """The best span's text and the answerability logit of each (question, passage), best window wins."""
    results: list[tuple[str, float]] = []
    for start in range(0, len(pairs), 64):
        chunk = pairs[start : start + 64]
        encoded = tokenizer(
            [clip_question(tokenizer, q) for q, _ in chunk],
            [p for _, p in chunk],
            truncation="only_second",
            max_length=MAX_TOKENS,
            stride=STRIDE,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
            padding=True,
            return_tensors="pt",
        )
        with torch.autocast("cpu", dtype=torch.bfloat16):
            starts, ends, answerable = network(
                encoded["input_ids"], encoded["attention_mask"], encoded["token_type_ids"]
            )
        best: dict[int, tuple[str, float]] = {}
        for window, pair_index in enumerate(encoded["overflow_to_sample_mapping"].tolist()):
            sequence_ids = encoded.sequence_ids(window)
            passage_mask = np.array([sequence == 1 for sequence in sequence_ids])
            span = best_span(starts[window].float().numpy(), ends[window].float().numpy(), passage_mask)
            offsets = encoded["offset_mapping"][window].tolist()
            text = chunk[pair_index][1][offsets[span[0]][0] : offsets[span[1]][1]] if span else ""
            score = float(answerable[window])
            if pair_index not in best or score > best[pair_index][1]:
                best[pair_index] = (text, score)
        results.extend(best[i] for i in range(len(chunk)))
    return results


# ---------------------------------------------------------------- checkpoints


def save_checkpoint(
    folder: Path, network: ReaderNetwork, optimizer: torch.optim.Optimizer, state: dict[str, Any]
) -> None:
    """Weights, optimiser moments (safetensors) and the loop's state (JSON), replaced atomically."""
    scratch = folder.with_name(folder.name + ".tmp")
    scratch.mkdir(parents=True, exist_ok=True)
    trained = {n: t.detach().contiguous() for n, t in network.state_dict().items() if not n.startswith(FROZEN_PREFIX)}
    save_file(trained, str(scratch / "weights.safetensors"))
    moments: dict[str, torch.Tensor] = {}
    names = [name for name, p in network.named_parameters() if p.requires_grad]
    optimizer_state = optimizer.state_dict()
    for index, values in optimizer_state["state"].items():
        for key, value in values.items():
            moments[f"{names[index]}|{key}"] = torch.as_tensor(value).contiguous()
    save_file(moments, str(scratch / "optimizer.safetensors"))
    (scratch / "state.json").write_text(json.dumps(state, indent=1) + "\n")
    if folder.exists():
        old = folder.with_name(folder.name + ".old")
        os.replace(folder, old)
        os.replace(scratch, folder)
        for path in old.iterdir():
            path.unlink()
        old.rmdir()
    else:
        os.replace(scratch, folder)


def load_checkpoint(folder: Path, network: ReaderNetwork, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore weights and optimiser from ``folder``; the loop's state."""
    network.load_state_dict(load_file(str(folder / "weights.safetensors")), strict=False)
    names = [name for name, p in network.named_parameters() if p.requires_grad]
    moments = load_file(str(folder / "optimizer.safetensors"))
    optimizer_state = optimizer.state_dict()
    optimizer_state["state"] = {}
    for key, value in moments.items():
        name, field = key.split("|")
        optimizer_state["state"].setdefault(names.index(name), {})[field] = value
    optimizer.load_state_dict(optimizer_state)
    return json.loads((folder / "state.json").read_text())


# ---------------------------------------------------------------- the run


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--squad", type=Path, default=Path("../shared/datasets/squad"))
    parser.add_argument("--out", type=Path, default=Path("training/runs/reader"))
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=8e-5)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--limit", type=int, default=0, help="train on this many questions only (a smoke test)")
    parser.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (a smoke test)")
    parser.add_argument("--log-every", type=int, default=50)
    parser.add_argument("--checkpoint-every", type=int, default=400)
    parser.add_argument("--eval-limit", type=int, default=0, help="score this many held-out questions only")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument(
        "--package",
        type=Path,
        metavar="FOLDER",
        help="write the shipped reader of the run's last checkpoint into FOLDER, and stop",
    )
    return parser.parse_args(argv)


def _split(args: argparse.Namespace) -> tuple[list[Question], list[Question], list[str], list[str]]:
    """Training and dev questions (sampled down by ``--limit`` and ``--eval-limit``), dev and test articles."""
    questions = load_questions(args.squad)
    dev_titles, test_titles = held_out_articles(questions)
    held_out = set(dev_titles) | set(test_titles)
    train = [q for q in questions if q.title not in held_out]
    dev = [q for q in questions if q.title in dev_titles]
    if args.limit:
        train = random.Random(args.seed).sample(train, min(args.limit, len(train)))
    if args.eval_limit:
        dev = random.Random(args.seed).sample(dev, min(args.eval_limit, len(dev)))
    return train, dev, dev_titles, test_titles


def _steps(args: argparse.Namespace, windows: int) -> tuple[int, int, Callable[[int], float]]:
    """Steps per epoch, steps in all, and the learning rate at each step (linear warm-up, linear decay)."""
    steps_per_epoch = math.ceil(windows / args.batch_size)
    total_steps = math.ceil(steps_per_epoch * args.epochs)
    if args.max_steps:
        total_steps = min(total_steps, args.max_steps)
    warmup = max(1, int(0.06 * total_steps))

    def learning_rate(step: int) -> float:
        if step < warmup:
            return float(args.learning_rate * (step + 1) / warmup)
        return float(args.learning_rate * max(0.0, (total_steps - step) / max(1, total_steps - warmup)))

    return steps_per_epoch, total_steps, learning_rate


def main(argv: list[str] | None = None) -> int:
    """Train, checkpoint, evaluate on held-out articles, and write the shipped model."""
    args = parse_arguments(argv)
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    began = time.time()
    model_folder = Path(resolve_model_location("all-MiniLM-L6-v2"))
    if args.package:
        return package(args.out, args.package, model_folder)
    train, dev, dev_titles, test_titles = _split(args)
    tokenizer = tokenizer_of(model_folder)
    pairs = training_pairs(train, seed=args.seed)
    windows = encode_pairs(tokenizer, pairs)
    network = base_network(model_folder)
    network.train()
    trainable = [p for p in network.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=args.learning_rate, weight_decay=0.01)
    steps_per_epoch, total_steps, learning_rate = _steps(args, len(windows))
    args.out.mkdir(parents=True, exist_ok=True)
    checkpoint = args.out / "checkpoint"
    state: dict[str, Any] = {"step": 0, "seconds": 0.0}
    if args.resume and (checkpoint / "state.json").is_file():
        state = load_checkpoint(checkpoint, network, optimizer)
        _log(args.out, {"event": "resumed", "step": state["step"]})
    _log(
        args.out,
        {
            "event": "start",
            "train_questions": len(train),
            "pairs": len(pairs),
            "windows": len(windows),
            "steps": total_steps,
            "dev_articles": dev_titles,
            "test_articles": test_titles,
            "threads": torch.get_num_threads(),
        },
    )
    step = int(state["step"])
    running = 0.0
    tick = time.time()
    for batch in _schedule(windows, args, tokenizer.pad_token_id, start=step, total=total_steps):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step)
        loss = loss_of(network, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        running += loss.item()
        if step % args.log_every == 0:
            now = time.time()
            state["seconds"] += now - tick
            tick = now
            _log(
                args.out,
                {
                    "step": step,
                    "of": total_steps,
                    "loss": running / args.log_every,
                    "lr": learning_rate(step),
                    "seconds": round(state["seconds"], 1),
                },
            )
            running = 0.0
        if step % args.checkpoint_every == 0 or step == total_steps:
            state["step"] = step
            save_checkpoint(checkpoint, network, optimizer, state)
        if step % steps_per_epoch == 0 or step == total_steps:
            _log(args.out, {"event": "dev", "step": step, **evaluate(network, tokenizer, dev)})
    run = {
        "command": " ".join([sys.executable.split("/")[-1], *sys.argv]),
        "arguments": {k: str(v) for k, v in vars(args).items()},
        "train_questions": len(train),
        "pairs": len(pairs),
        "windows": len(windows),
        "steps": step,
        "train_seconds": round(state["seconds"], 1),
        "wall_seconds": round(time.time() - began, 1),
        "dev_articles": dev_titles,
        "test_articles": test_titles,
        "machine": {
            "cpus": os.cpu_count(),
            "threads": torch.get_num_threads(),
            "platform": platform.platform(),
            "torch": torch.__version__,
            "processor": _processor(),
        },
    }
    (args.out / "run.json").write_text(json.dumps(run, indent=1) + "\n")
    ship(network, args.out / "model", training=run)
    return 0


def package(run: Path, target: Path, model_folder: Path) -> int:
    """Write the shipped reader (float16, no word embeddings) of ``run``'s last checkpoint into ``target``."""
    network = base_network(model_folder)
    network.load_state_dict(load_file(str(run / "checkpoint" / "weights.safetensors")), strict=False)
    state = json.loads((run / "checkpoint" / "state.json").read_text())
    training = json.loads((run / "run.json").read_text()) if (run / "run.json").is_file() else {"steps": state["step"]}
    ship(network, target, training=training)
    return 0


def ship(network: ReaderNetwork, folder: Path, *, training: dict[str, Any]) -> None:
    """Write the reader as ``qa`` loads it into ``folder``, with the record of its training."""
    write_trained(
        network,
        folder,
        name="qa-reader-minilm-l6-squad",
        base_model=DEFAULT_MODEL,
        max_tokens=MAX_TOKENS,
        stride=STRIDE,
        max_question_tokens=MAX_QUESTION_TOKENS,
        training=training,
    )


def _schedule(
    windows: list[dict[str, Any]], args: argparse.Namespace, pad_id: int, *, start: int, total: int
) -> Iterator[dict[str, torch.Tensor]]:
    """Batches from step ``start`` to ``total``, each epoch in its own seeded order (so resuming repeats nothing)."""
    step = 0
    epoch = 0
    while step < total:
        epoch_batches = batches(windows, size=args.batch_size, seed=args.seed * 1000 + epoch, pad_id=pad_id)
        for batch in epoch_batches:
            if step >= total:
                return
            if step >= start:
                yield batch
            step += 1
        epoch += 1


def _processor() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor()
    match = re.search(r"model name\s*:\s*(.+)", text)
    return match.group(1) if match else platform.processor()


def _log(folder: Path, record: dict[str, Any]) -> None:
    record = {"time": time.strftime("%H:%M:%S"), **record}
    print(json.dumps(record), flush=True)
    with (folder / "progress.jsonl").open("a", encoding="utf-8") as log:
        log.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    sys.exit(main())
