"""Accuracy ceiling of tinyformer's int8 scheme: an idealised fake-quant simulation.

Runs the float64 reference (``bert_numpy.py``) with the *rounding* of tinyformer's
int8 scheme inserted, and nothing else: no integer softmax, LayerNorm or GELU, no
activation scales folded into weights, no fixed-point requantization. So its result
is what any implementation of the scheme could reach at best, and the runtime's own
figure (``tools/tests/golden.rs``) can be read against it.

The scheme (``docs/FORMAT.md``, ``tools/src/convert.rs``):

    weights              per output channel, absmax / 127, round to nearest
    LayerNorm outputs    per channel, calibrated absmax x 1.5 (capped at the tensor
                         max, floored at max / 1024) / 127
    keys                 per tensor, calibrated absmax / 127
    values               per channel, as LayerNorm outputs
    query, context and   per row, a power-of-two scale that fits the row's absmax
    FFN activation rows  into int8

Calibration uses the even-indexed golden sentences (as ``tools/tests/golden.rs``);
cosines are over all sentences, of the model's pooled output (``pooling`` of the
golden: ``cls_pooler`` = [CLS] through dense + tanh, ``mean``, ``cls``) against the
unquantized pass. ``--bits`` changes the activation width (weights stay int8), to
show how many bits a model needs to reach a target.

Usage (numpy + safetensors, like the reference):

    python tools/reference/int8_ceiling.py tests/fixtures/tiny-bert-cls \\
        tests/fixtures/golden/tiny-bert-cls.json [--bits 8 10 12]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bert_numpy import BertNumpy, dense, layer_norm, softmax  # noqa: E402

SOURCES = ("weights", "layernorm", "keys", "values", "query", "context", "ffn")


class Sim:
    def __init__(self, model: BertNumpy, pooling: str):
        self.m, self.c, self.w = model, model.config, model.w
        self.pooling = pooling
        self.ranges: dict[str, np.ndarray] = {}
        self._qw: dict[str, np.ndarray] = {}

    # -- quantizers --------------------------------------------------------------
    def weight(self, name: str, on: bool) -> np.ndarray:
        w = self.w[name]
        if not on:
            return w
        if name not in self._qw:
            s = np.abs(w).max(axis=1, keepdims=True) / 127
            s[s == 0] = 1
            self._qw[name] = np.round(w / s) * s
        return self._qw[name]

    def act(self, name, x, kind, on, levels):
        if self.calibrating:
            r = self.ranges.setdefault(name, np.zeros(x.shape[-1]))
            np.maximum(r, np.abs(x).max(axis=0), out=r)
            return x
        if not on:
            return x
        a = self.ranges[name]
        if kind == "tensor":
            s = max(a.max(), 1e-12) / levels
        elif kind == "channel":
            top = max(a.max(), 1e-12)
            s = np.maximum(np.minimum(a * 1.5, top), top / 1024) / levels
        else:  # row: power of two per row
            top = np.abs(x).max(axis=-1, keepdims=True) + 1e-30
            s = 2.0 ** np.ceil(np.log2(top / levels))
            return np.clip(np.round(x / s), -levels - 1, levels) * s
        return np.clip(np.round(x / s), -levels, levels) * s

    # -- forward -----------------------------------------------------------------
    def forward(self, ids, on=(), bits=8, calibrating=False):
        self.calibrating = calibrating
        levels = 2 ** (bits - 1) - 1
        c, w = self.c, self.w
        A = lambda name, x, kind, src: self.act(name, x, kind, src in on, levels)  # noqa: E731
        W = lambda name: self.weight(name, "weights" in on)  # noqa: E731
        n, hd, heads = len(ids), c.head_dim, c.num_attention_heads
        x = (w["embeddings.word_embeddings.weight"][ids]
             + w["embeddings.position_embeddings.weight"][:n]
             + w["embeddings.token_type_embeddings.weight"][0])
        x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"],
                       c.layer_norm_eps)
        x = A("x.emb", x, "channel", "layernorm")
        for i in range(c.num_hidden_layers):
            p = f"encoder.layer.{i}."
            q = A(f"q.{i}", dense(x, W(p + "attention.self.query.weight"),
                                  w[p + "attention.self.query.bias"]), "row", "query")
            k = A(f"k.{i}", dense(x, W(p + "attention.self.key.weight"),
                                  w[p + "attention.self.key.bias"]), "tensor", "keys")
            v = A(f"v.{i}", dense(x, W(p + "attention.self.value.weight"),
                                  w[p + "attention.self.value.bias"]), "channel", "values")
            ctx = np.zeros_like(q)
            for h in range(heads):
                cols = slice(h * hd, (h + 1) * hd)
                ctx[:, cols] = softmax(q[:, cols] @ k[:, cols].T / math.sqrt(hd)) @ v[:, cols]
            ctx = A(f"ctx.{i}", ctx, "row", "context")
            a = dense(ctx, W(p + "attention.output.dense.weight"),
                      w[p + "attention.output.dense.bias"])
            x = layer_norm(x + a, w[p + "attention.output.LayerNorm.weight"],
                           w[p + "attention.output.LayerNorm.bias"], c.layer_norm_eps)
            x = A(f"x.a{i}", x, "channel", "layernorm")
            f = self.m.act(dense(x, W(p + "intermediate.dense.weight"),
                                 w[p + "intermediate.dense.bias"]))
            f = A(f"g.{i}", f, "row", "ffn")
            f = dense(f, W(p + "output.dense.weight"), w[p + "output.dense.bias"])
            x = layer_norm(x + f, w[p + "output.LayerNorm.weight"],
                           w[p + "output.LayerNorm.bias"], c.layer_norm_eps)
            x = A(f"x.f{i}", x, "channel", "layernorm")
        if self.pooling == "cls_pooler":
            return np.tanh(dense(x[0:1], W("pooler.dense.weight"), w["pooler.dense.bias"]))[0]
        if self.pooling == "cls":
            return x[0]
        return x.mean(axis=0)


def cosine(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("golden")
    ap.add_argument("--bits", type=int, nargs="+", default=[8],
                    help="activation bits (weights stay int8)")
    args = ap.parse_args()
    golden = json.load(open(args.golden, encoding="utf-8"))
    sim = Sim(BertNumpy.from_pretrained(args.checkpoint), golden["pooling"])
    cases = [np.asarray(c["ids"]) for c in golden["cases"]]
    for ids in cases[::2]:
        sim.forward(ids, calibrating=True)
    ref = [sim.forward(ids) for ids in cases]
    print(f"{args.checkpoint}: pooling {golden['pooling']}, {len(cases)} sentences "
          f"(calibrated on {len(cases[::2])}); pooled cosine vs float, min / mean")
    rows = [(s,) for s in SOURCES] + [SOURCES]
    for bits in args.bits:
        for on in rows if bits == args.bits[0] else [SOURCES]:
            cs = [cosine(sim.forward(ids, on, bits), r) for ids, r in zip(cases, ref)]
            label = "all of them" if on == SOURCES else f"{on[0]} only"
            print(f"  activations {bits:2d} bits, {label:<16} {min(cs):.5f} / {np.mean(cs):.5f}")


if __name__ == "__main__":
    main()
