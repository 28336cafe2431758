"""Which test tells a supported citation from an unsupported one: the encoder or the reader.

    .venv/bin/python benchmarks/citation_support.py

Hand-made cases on the bundled corpus: a sentence a model might write, the passage it cites,
and whether that passage says it (paraphrases, and sentences it does not say: a detail
changed, another passage's fact, something on the subject that no article says). Each test
scores every case:

- encoder: the highest cosine between the sentence and a sentence of the passage, with the
  index's stored sentence vectors, as ``qa.search.written.check_answer`` does;
- reader: the trained reader's answerability logit, reading the passage with the sentence as
  the question.

For each, the threshold that classifies the most cases right, and the area under the ROC curve.
Writes ``benchmarks/results/citation_support.json``.
"""

from __future__ import annotations

import functools
import itertools
import json
import tempfile
from pathlib import Path

import numpy as np

from qa.embed.encoder import SentenceTransformerEncoder
from qa.embed.models import DEFAULT_MODEL
from qa.index.build import index_corpus, open_index, settings_for
from qa.ingest.split import split_sentences
from qa.reader.model import Reader
from qa.records import Hit
from qa.search.evidence import SentenceMemory, sentence_embedder
from qa.search.written import MIN_SUPPORT, sentence_support

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "benchmarks" / "results" / "citation_support.json"
DAILY, REUTERS, TIMES, NKNEWS, RFA = "dailynk", "kim-jong-un", "koreatimes", "north-must", "rfa-kim"
# (document's file name prefix, paragraph, sentence citing that passage, whether the passage says it)
CASES = [
    (DAILY, 1, "Kim Yo Jong told officials across the country to encourage and educate defectors' families.", True),
    (DAILY, 1, "Kim Yo Jong ordered the arrest of the families of defectors.", False),
    (DAILY, 2, "North Korea has called defectors human trash in large public campaigns.", True),
    (DAILY, 2, "North Korea has praised defectors in its public campaigns.", False),
    (DAILY, 3, "The order went to provincial party committees on the morning of June 10.", True),
    (DAILY, 3, "Around 30,000 North Koreans have fled to the South since the Korean War.", False),
    (DAILY, 7, "Officials were told to give loyal defector families material and political encouragement.", True),
    (DAILY, 15, "Families in Hoeryong will get alcohol, pork, snacks and candy as gifts.", True),
    (DAILY, 15, "Families in Hoeryong will receive cash payments and new apartments.", False),
    (DAILY, 12, "Reports on the effort go through internal party channels, kept from the public.", True),
    (REUTERS, 1, "Kim Jong-un has promised that defectors who return will be rewarded rather than harmed.", True),
    (REUTERS, 1, "Kim Jong-un has announced that returning defectors will be sent to prison camps.", False),
    (REUTERS, 3, "Defectors in the South get calls from relatives in the North urging them to come back.", True),
    (REUTERS, 4, "Nine defectors were sent back to North Korea from Laos.", True),
    (REUTERS, 4, "Lim Ji-hyun returned to the North in 2017 after working as a TV personality.", False),
    (REUTERS, 2, "Returned defectors appeared on television apologising for having left.", True),
    (TIMES, 3, "At least 11 defectors have gone back to the North in the past five years.", True),
    (TIMES, 3, "The unification ministry says 34,000 defectors returned to the North last year.", False),
    (TIMES, 4, "The latest returnee, a 24-year-old man, fled to avoid criminal charges in the South.", True),
    (TIMES, 4, "The latest returnee was a famous TV personality who missed her family.", False),
    (TIMES, 6, "Lim Ji-hyun became a TV personality in the South and went back to the North in 2017.", True),
    (TIMES, 9, "Many defectors fail to adjust to life in the South and some turn to crimes like voice phishing.", True),
    (TIMES, 9, "Defectors usually find well-paid jobs in Seoul within a year.", False),
    (TIMES, 11, "About 34,000 defectors live in the South and get less support under the Moon government.", True),
    (TIMES, 2, "Returning defectors are seen as traitors and may be imprisoned.", True),
    (TIMES, 2, "The regime welcomes returning defectors as heroes and gives them houses.", False),
    (NKNEWS, 1, "Kim Kwang Hyok and Ko Jong Nam said they had been conned into defecting.", True),
    (NKNEWS, 4, "North Korea's security agency has been luring defectors in the South back since last year.", True),
    (NKNEWS, 4, "The weather in Pyongyang was unusually warm this September.", False),
    (RFA, 1, "Kim Jong Un ordered state agencies to pressure defectors' families so the defectors come home.", True),
    (RFA, 8, "Security agents made a defector's mother phone her son in the South.", True),
    (RFA, 8, "The defector's mother travelled to Seoul to bring her son home.", False),
    (RFA, 14, "1,127 North Koreans reached the South in 2017, down 21 percent from 2016.", True),
    (RFA, 14, "Arrivals in the South doubled in 2017.", False),
    (RFA, 15, "The South blamed fewer defections on tighter border controls by North Korea and China.", True),
    (RFA, 10, "Most families are wary and tell their relatives not to be tricked by the propaganda.", True),
]


def auc(scores: list[float], labels: list[bool]) -> float:
    """The chance that a supported case scores above an unsupported one (ties count half)."""
    good = [s for s, label in zip(scores, labels, strict=True) if label]
    bad = [s for s, label in zip(scores, labels, strict=True) if not label]
    wins = sum((g > b) + 0.5 * (g == b) for g in good for b in bad)
    return wins / (len(good) * len(bad))


def best_threshold(scores: list[float], labels: list[bool]) -> tuple[float, int]:
    """The threshold (midway between two scores) that classifies the most cases right, and how many."""
    ordered = sorted(set(scores))
    candidates = [ordered[0] - 1, *((a + b) / 2 for a, b in itertools.pairwise(ordered)), ordered[-1] + 1]
    right = [sum((s >= t) == label for s, label in zip(scores, labels, strict=True)) for t in candidates]
    best = int(np.argmax(right))
    return candidates[best], right[best]


def both(rows: list[dict[str, object]], labels: list[bool]) -> dict[str, object]:
    """Both tests at once (supported when both pass): the pair of thresholds that classifies the most right."""
    best = (-1, 0.0, 0.0)
    for encoder_min in sorted({float(row["encoder"]) for row in rows}):  # type: ignore[arg-type]
        for reader_min in sorted({float(row["reader"]) for row in rows}):  # type: ignore[arg-type]
            right = sum(
                (float(row["encoder"]) >= encoder_min and float(row["reader"]) >= reader_min) == label  # type: ignore[arg-type]
                for row, label in zip(rows, labels, strict=True)
            )
            best = max(best, (right, encoder_min, reader_min))
    return {"right_at_best": best[0], "encoder_min": best[1], "reader_min": best[2], "cases": len(rows)}


def main() -> None:
    encoder = SentenceTransformerEncoder(DEFAULT_MODEL)
    reader = Reader()
    with tempfile.TemporaryDirectory() as folder:
        settings, count_tokens = settings_for(encoder)
        index_corpus(REPO / "corpus", Path(folder), encoder=encoder, settings=settings, count_tokens=count_tokens)
        store = open_index(Path(folder))
        passages = {(p.source, p.paragraph): p for p in store.iter_passages()}
        memory = SentenceMemory()
        rows = []
        for prefix, paragraph, sentence, supported in CASES:
            passage = next(
                p for (name, number), p in passages.items() if name.startswith(prefix) and number == paragraph
            )
            hit = Hit(rank=1, score=0.0, passage=passage)
            embed = sentence_embedder(store, [hit], fallback=functools.partial(memory.embed, encoder=encoder))
            candidates = [passage.text[s:e] for s, e in split_sentences(passage.text)]
            cosine = sentence_support(sentence, candidates, embed)
            logit = reader.read(sentence, [passage.text])[0].score
            rows.append(
                {
                    "source": passage.source,
                    "paragraph": paragraph,
                    "sentence": sentence,
                    "supported": supported,
                    "encoder": round(cosine, 4),
                    "reader": round(logit, 4),
                }
            )
    labels = [row["supported"] for row in rows]
    summary = {}
    for test in ("encoder", "reader"):
        scores = [row[test] for row in rows]
        threshold, right = best_threshold(scores, labels)
        summary[test] = {
            "auc": round(auc(scores, labels), 4),
            "best_threshold": round(threshold, 4),
            "right_at_best": right,
            "cases": len(rows),
        }
    summary["both"] = both(rows, labels)
    scores = [row["encoder"] for row in rows]
    summary["encoder"]["right_at_min_support"] = sum(
        (score >= MIN_SUPPORT) == label for score, label in zip(scores, labels, strict=True)
    )
    summary["encoder"]["min_support"] = MIN_SUPPORT
    OUT.write_text(json.dumps({"summary": summary, "cases": rows}, indent=2) + "\n", encoding="utf-8")
    for test, figures in summary.items():
        print(test, figures)
    for row in rows:
        print(f"{row['supported']!s:5} enc {row['encoder']:.3f} reader {row['reader']:+.2f}  {row['sentence']}")


if __name__ == "__main__":
    main()
