#!/usr/bin/env python3
"""Where the int8 decoder's disagreement with f32 comes from: an f64 numpy Llama for a
llama2.c checkpoint (stories260K by default), teacher-forced on the held-out story text,
with parts of the int8 scheme applied as fake quantization (rounding only, no integer
arithmetic), reporting perplexity and top-1 agreement with the float
model, plus how many positions are near-ties.

Parts (each run applies the parts named on the command line; join parts with + to
combine them, e.g. weights+activations16+kv-channel):
  weights        int8 per output row (max / 127), the converter's rounding
  activations    every matmul input (norm outputs, queries per head, attention context,
                 SwiGLU output, final norm) narrowed per token to int8 with the row's
                 own scale (max / 127)
  activationsB   the same at B bits (max -> 2^(B-1) - 1), e.g. activations16 as
                 `quant::narrow_row_i16`
  kv-head        int8 key/value cache, one static scale per key/value head (calibrated
                 maximum on the calibration text)
  kv-pair        as kv-channel, but keys with one scale per rotated pair of channels
  kv-channel     int8 key/value cache, one static scale per channel (the runtime's)

The figures in docs/ACCURACY.md ("Decoders") come from this script:
  pip install numpy
  cargo build --release -p tinyformer-cli
  python3 tools/reference/decoder_int8_ceiling.py
It tokenizes through `tinyformer tokenize` (the model's own tokenizer) and takes a few
minutes on one core.
"""
import argparse
import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def load(path):
    b = path.read_bytes()
    dim, hid, layers, heads, kv_heads, vocab, seq = struct.unpack("<7i", b[:28])
    shared = vocab > 0
    vocab = abs(vocab)
    a = np.frombuffer(b[28:], dtype=np.float32).astype(np.float64)
    hd = dim // heads
    kvd = kv_heads * hd
    off = 0

    def take(*shape):
        nonlocal off
        n = int(np.prod(shape))
        t = a[off : off + n].reshape(shape)
        off += n
        return t

    w = dict(emb=take(vocab, dim), ra=take(layers, dim), wq=take(layers, dim, dim),
             wk=take(layers, kvd, dim), wv=take(layers, kvd, dim), wo=take(layers, dim, dim),
             rf=take(layers, dim), w1=take(layers, hid, dim), w2=take(layers, dim, hid),
             w3=take(layers, hid, dim), rfin=take(dim))
    off += seq * hd  # legacy RoPE tables
    w["cls"] = w["emb"] if shared else take(vocab, dim)
    return dict(dim=dim, layers=layers, heads=heads, kv_heads=kv_heads, hd=hd, **w)


def tokenize(tinyformer, model, path):
    out = subprocess.run([tinyformer, "tokenize", "-m", model, "--json"], stdin=open(path),
                         capture_output=True, text=True, check=True).stdout
    return [ids for ids in (json.loads(l)["ids"] for l in out.splitlines()) if len(ids) > 1]


def rows(w):
    s = np.abs(w).max(axis=-1, keepdims=True) / 127
    s[s == 0] = 1
    return np.round(w / s) * s


def narrow(x, top=127):
    m = np.abs(x).max()
    return x if m == 0 else np.round(x / (m / top)) * (m / top)


def run(m, seq, parts=(), ranges=None, collect=None):
    """Teacher-forced pass with the given parts of the scheme applied: (nll sum,
    argmax list, top-2 margins)."""
    hd, heads, kvh = m["hd"], m["heads"], m["kv_heads"]
    group = heads // kvh
    freqs = 10000.0 ** (-(2 * np.arange(hd // 2)) / hd)
    W = {k: (rows(m[k]) if "weights" in parts else m[k])
         for k in ("wq", "wk", "wv", "wo", "w1", "w2", "w3", "emb", "cls")}
    if "activations" in parts:
        act = narrow
    elif any(p.startswith("activations") for p in parts):
        # activationsB: narrowed to B-bit integers (max -> 2^(B-1) - 1)
        bits = int(next(p for p in parts if p.startswith("activations"))[len("activations"):])
        act = lambda v: narrow(v, (1 << (bits - 1)) - 1)
    else:
        act = lambda v: v

    def rope(x, pos):
        x = x.reshape(-1, hd // 2, 2).copy()
        c, s = np.cos(pos * freqs), np.sin(pos * freqs)
        x[..., 0], x[..., 1] = x[..., 0] * c - x[..., 1] * s, x[..., 0] * s + x[..., 1] * c
        return x.reshape(-1)

    def norm(x, g):
        return act(x / np.sqrt((x * x).mean() + 1e-5) * g)

    cache = [([], []) for _ in range(m["layers"])]
    nll, top, margins = 0.0, [], []
    for pos, t in enumerate(seq[:-1]):
        x = W["emb"][t].copy()
        for l in range(m["layers"]):
            xb = norm(x, m["ra"][l])
            q, k, v = rope(W["wq"][l] @ xb, pos), rope(W["wk"][l] @ xb, pos), W["wv"][l] @ xb
            if collect is not None:
                collect["k"][l] = np.maximum(collect["k"][l], np.abs(k))
                collect["v"][l] = np.maximum(collect["v"][l], np.abs(v))
            kv = [p for p in parts if p.startswith("kv-")]
            if kv:
                for vec, key in ((k, "k"), (v, "v")):
                    mx = ranges[key][l]
                    if kv[0] == "kv-head":
                        mx = np.repeat(mx.reshape(kvh, hd).max(axis=1), hd)
                    if kv[0] == "kv-pair" and key == "k":
                        mx = np.repeat(mx.reshape(-1, 2).max(axis=1), 2)
                    s = np.maximum(mx, 1e-6) / 127
                    vec[:] = np.clip(np.round(vec / s), -127, 127) * s
            cache[l][0].append(k)
            cache[l][1].append(v)
            K, V = np.array(cache[l][0]), np.array(cache[l][1])
            ctx = np.zeros(m["dim"])
            for h in range(heads):
                g = h // group
                sc = K[:, g * hd:(g + 1) * hd] @ act(q[h * hd:(h + 1) * hd]) / np.sqrt(hd)
                p = np.exp(sc - sc.max())
                ctx[h * hd:(h + 1) * hd] = (p / p.sum()) @ V[:, g * hd:(g + 1) * hd]
            x = x + W["wo"][l] @ act(ctx)
            xb = norm(x, m["rf"][l])
            gate = W["w1"][l] @ xb
            x = x + W["w2"][l] @ act(gate / (1 + np.exp(-gate)) * (W["w3"][l] @ xb))
        logits = W["cls"] @ norm(x, m["rfin"])
        z = logits - logits.max()
        nll -= z[seq[pos + 1]] - np.log(np.exp(z).sum())
        top.append(int(np.argmax(logits)))
        s = np.sort(logits)
        margins.append(s[-1] - s[-2])
    return nll, top, margins


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default=ROOT / "models/stories260K/stories260K.bin", type=Path)
    ap.add_argument("--model", default=str(ROOT / "models/stories260K/stories260K-int8.tfm"),
                    help="any tinyformer file of the checkpoint (for its tokenizer)")
    ap.add_argument("--tinyformer", default=str(ROOT / "target/release/tinyformer"))
    ap.add_argument("--heldout", default=ROOT / "tests/fixtures/stories/heldout.txt", type=Path)
    ap.add_argument("--calibration", default=ROOT / "tests/fixtures/stories/calibration.txt", type=Path)
    ap.add_argument("parts", nargs="*", default=["weights", "activations", "activations16", "kv-head", "kv-channel",
                             "weights+activations16+kv-pair",
                             "weights+activations16+kv-channel"],
                    help="parts to apply, one run each; join parts with + to combine them "
                         "(e.g. weights+activations16+kv-channel)")
    args = ap.parse_args()
    m = load(args.checkpoint)
    held = tokenize(args.tinyformer, args.model, args.heldout)
    cal = tokenize(args.tinyformer, args.model, args.calibration)
    kvd = m["kv_heads"] * m["hd"]
    ranges = {"k": [np.zeros(kvd) for _ in range(m["layers"])],
              "v": [np.zeros(kvd) for _ in range(m["layers"])]}
    for seq in cal:
        run(m, seq, collect=ranges)
    ref = [run(m, seq) for seq in held]
    n = sum(len(s) - 1 for s in held)
    ref_nll = sum(r[0] for r in ref)
    margins = np.concatenate([r[2] for r in ref])
    print(f"f64 reference: perplexity {np.exp(ref_nll / n):.4f} over {n} tokens")
    for d in (0.05, 0.1, 0.2):
        print(f"  positions whose top-2 logit margin is below {d}: {(margins < d).mean():.3f}")
    for combo in args.parts:
        parts = tuple(combo.split("+"))
        res = [run(m, seq, parts, ranges) for seq in held]
        nll = sum(r[0] for r in res)
        agree = sum(sum(a == b for a, b in zip(r[1], f[1])) for r, f in zip(res, ref)) / n
        print(f"{combo:12s}: perplexity {np.exp(nll / n):.4f} "
              f"({(np.exp((nll - ref_nll) / n) - 1) * 100:+.2f}%), top-1 agreement {agree:.4f}",
              flush=True)


if __name__ == "__main__":
    sys.exit(main())
