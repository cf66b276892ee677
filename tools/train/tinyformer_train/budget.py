"""Choosing the student's shape and vocabulary so that its int8 file fits the flash
budget and its arena the RAM budget.

Candidate shapes: layers 2-3 x hidden 96-256 (heads = hidden / 32, FFN = 4 x hidden),
tried from the largest transformer (layers x hidden^2, the compute that carries the
accuracy) down. For each shape the vocabulary is the largest multiple of 500 (at most
16,000, at least --min-vocab) whose estimated file fits; then the real vocabulary is
trained and a random checkpoint of exactly that shape and vocabulary is converted to
int8 and inspected with `tinyformer`: file size and arena are the measured ones (they
depend on shapes and vocabulary strings only, not on weight values). If the file is
over the budget the vocabulary shrinks and the measurement is redone; the first shape
that fits both budgets is the choice. Every attempt is recorded for EVAL.md.
"""

from __future__ import annotations

import math
import re
import tempfile
from dataclasses import dataclass, asdict
from pathlib import Path

from . import TrainError, tfm
from .checkpoint import bert_config, write_random_checkpoint
from .vocab import train_vocab

LAYERS = (2, 3)
HIDDEN = (96, 128, 160, 192, 256)
VOCAB_STEP = 500
VOCAB_MAX = 16000
_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "kib": 2**10, "mib": 2**20}


def parse_bytes(text: str) -> int:
    """'1MiB' -> 1048576, '64KiB' -> 65536, '1MB' -> 1000000, '900000' -> 900000."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", text)
    if not m or m.group(2).lower() not in _UNITS:
        raise TrainError(f"{text!r}: not a size; write e.g. 1MiB, 64KiB, 1MB or 900000 (bytes)")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def estimate_int8_bytes(layers: int, hidden: int, vocab: int, max_seq: int, labels: int) -> int:
    """int8 weights (word and position embeddings, per layer Q/K/V/O + FFN, pooler,
    classifier) plus, per vocabulary entry, its requantization pair and string (~16
    bytes), and per layer the i32 biases, requantization pairs and LayerNorms (about
    100 x hidden + 20 x FFN bytes, read off `tinyformer inspect`). A slight
    underestimate on purpose (it only prunes shapes that cannot fit): the real size
    comes from converting (`measure`)."""
    ffn = 4 * hidden
    weights = (vocab + max_seq + 2) * hidden + layers * (4 * hidden * hidden + 2 * hidden * ffn) \
        + hidden * hidden + labels * hidden
    return weights + 16 * vocab + layers * (100 * hidden + 20 * ffn)


@dataclass
class Attempt:
    layers: int
    hidden: int
    vocab_requested: int
    vocab: int | None = None
    estimate_bytes: int | None = None
    file_bytes: int | None = None
    arena_bytes: int | None = None
    fits: bool = False
    note: str = ""


def measure(tf: str, config: dict, vocab_text: str, calibration: Path, max_seq: int,
            work: Path) -> tuple[int, int]:
    """(int8 file bytes, arena bytes at max_seq) of a random checkpoint of `config`."""
    ckpt = write_random_checkpoint(work / "ckpt", config, vocab_text)
    out = tfm.convert(tf, ckpt, work / "probe-int8.tfm", "int8", max_seq, calibration)
    info = tfm.inspect(tf, out, max_seq)
    return info["file_bytes"], info["memory_plan"]["arena_bytes"]


def fit_student(tf: str, train_texts: list[str], calibration_texts: list[str], labels: list[str], max_seq: int,
                flash: int, arena: int, min_vocab: int, layers: int | None = None,
                hidden: int | None = None, vocab: int | None = None,
                log=print) -> tuple[dict, list[Attempt]]:
    """The chosen {layers, hidden, vocab_size} and every attempt. `layers`, `hidden`,
    `vocab` fix that dimension instead of searching it. `calibration_texts` must start
    like the real calibration file: the converter stores the first texts in the file's
    self-test section, so they count in its size. Raises TrainError when nothing fits."""
    shapes = [(l, h) for l in ((layers,) if layers else LAYERS) for h in ((hidden,) if hidden else HIDDEN)]
    shapes.sort(key=lambda s: (s[0] * s[1] * s[1], s[0]), reverse=True)
    attempts: list[Attempt] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        # Beyond the self-test texts sizes do not depend on calibration; a few lines
        # keep each probe conversion fast.
        calibration = work / "calibration.txt"
        calibration.write_text("".join(t + "\n" for t in calibration_texts[:8]), encoding="utf-8")
        for l, h in shapes:
            if vocab:
                v = vocab
            else:
                per_entry = estimate_int8_bytes(l, h, 1, max_seq, len(labels)) - \
                    estimate_int8_bytes(l, h, 0, max_seq, len(labels))
                room = flash - estimate_int8_bytes(l, h, 0, max_seq, len(labels))
                v = min(VOCAB_MAX, max(0, room) // per_entry)
                if v >= VOCAB_STEP:
                    v = v // VOCAB_STEP * VOCAB_STEP
            att = Attempt(l, h, v, estimate_bytes=estimate_int8_bytes(l, h, v, max_seq, len(labels)))
            if v < min_vocab and not vocab:
                att.vocab_requested = min_vocab
                att.estimate_bytes = estimate_int8_bytes(l, h, min_vocab, max_seq, len(labels))
                att.note = f"estimate over budget with the smallest vocabulary ({min_vocab})"
                attempts.append(att)
                continue
            for _ in range(4):
                vpath, vlist = train_vocab(train_texts, v, work / f"vocab-{l}-{h}-{v}")
                cfg = bert_config(len(vlist), h, l, max_seq, labels)
                fb, ab = measure(tf, cfg, vpath.read_text(encoding="utf-8"), calibration, max_seq, work)
                att.vocab, att.file_bytes, att.arena_bytes = len(vlist), fb, ab
                log(f"budget: {l} layers x hidden {h}, vocabulary {len(vlist)}: int8 file {fb:,} bytes, "
                    f"arena {ab:,} bytes at {max_seq} tokens")
                if ab > arena:
                    att.note = f"arena {ab:,} > budget {arena:,}"
                    break
                if fb <= flash:
                    att.fits = True
                    break
                if vocab:
                    att.note = f"file {fb:,} > budget {flash:,} with the requested vocabulary"
                    break
                # Shrink by the measured excess at ~(hidden + 16) bytes per entry, then re-measure.
                over = fb - flash
                nv = (len(vlist) - math.ceil(over / (h + 16))) // VOCAB_STEP * VOCAB_STEP
                if nv < min_vocab:
                    att.note = f"file {fb:,} > budget {flash:,}; a vocabulary of {min_vocab} would not fit"
                    break
                attempts.append(att)
                att = Attempt(l, h, nv, estimate_bytes=estimate_int8_bytes(l, h, nv, max_seq, len(labels)),
                              note="vocabulary shrunk after measuring")
                v = nv
            attempts.append(att)
            if att.fits:
                return {"layers": l, "hidden": h, "vocab_size": att.vocab,
                        "vocab_requested": att.vocab_requested, "file_bytes": att.file_bytes,
                        "arena_bytes": att.arena_bytes}, attempts
    smallest = min((a for a in attempts if a.file_bytes), key=lambda a: a.file_bytes, default=None)
    detail = (f"; the smallest measured candidate ({smallest.layers} layers x hidden {smallest.hidden}, "
              f"vocabulary {smallest.vocab}) needs {smallest.file_bytes:,} bytes of flash and "
              f"{smallest.arena_bytes:,} bytes of arena" if smallest else "")
    raise TrainError(f"no student fits --flash-budget {flash:,} bytes and --arena-budget {arena:,} bytes "
                     f"at --max-seq {max_seq} (candidates: layers {sorted({s[0] for s in shapes})}, hidden "
                     f"{sorted({s[1] for s in shapes})}, vocabulary >= {min_vocab}){detail}; raise a budget, "
                     "lower --max-seq or --min-vocab")


def attempts_table(attempts: list[Attempt]) -> list[dict]:
    return [asdict(a) for a in attempts]
