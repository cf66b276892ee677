"""Shrink a llama2.c checkpoint to a seed-sized one for the fuzz corpora.

    python3 fuzz/shrink_llama2c.py models/stories260K/stories260K.bin OUT.bin \
        DIM HEADS KV_HEADS FFN LAYERS VOCAB SEQ [separate]

Keeps leading slices of the real weights: the first DIM model dimensions (HEADS query
heads and KV_HEADS key/value heads of the original head size), FFN SwiGLU units,
LAYERS layers, VOCAB tokens and SEQ positions, so the result is still a Llama-shaped
model with trained-looking weights (its answers mean nothing). With `separate`, the
output classifier is stored unshared (negative vocab_size in the header): the
embedding rows in reverse order. The llama2.c tokenizer needs no shrinking: the
converter reads its first VOCAB tokens. Standard library only; deterministic.
"""

import struct
import sys


def main():
    src, dst = sys.argv[1], sys.argv[2]
    dim, heads, kv_heads, ffn, layers, vocab, seq = map(int, sys.argv[3:10])
    separate = sys.argv[10:] == ["separate"]
    data = open(src, "rb").read()
    c = dict(zip(["dim", "ffn", "layers", "heads", "kv_heads", "vocab", "seq"], struct.unpack_from("<7i", data)))
    shared = c["vocab"] > 0
    c["vocab"] = abs(c["vocab"])
    head = c["dim"] // c["heads"]
    assert dim == heads * head and kv_heads <= c["kv_heads"] and heads <= c["heads"]
    assert ffn <= c["ffn"] and layers <= c["layers"] and vocab <= c["vocab"] and seq <= c["seq"]
    kv, c_kv = kv_heads * head, c["kv_heads"] * head
    floats = struct.unpack_from(f"<{(len(data) - 28) // 4}f", data, 28)
    at = 0

    def take(n_layers, rows, cols):
        """The next tensor, as n_layers lists of rows of cols floats."""
        nonlocal at
        out = []
        for _ in range(n_layers):
            out.append([floats[at + r * cols : at + (r + 1) * cols] for r in range(rows)])
            at += rows * cols
        return out

    def cut(tensor, rows, cols):
        return [[row[:cols] for row in layer[:rows]] for layer in tensor[:layers]]

    emb = take(1, c["vocab"], c["dim"])[0]
    parts = {
        "rms_att": cut(take(c["layers"], 1, c["dim"]), 1, dim),
        "wq": cut(take(c["layers"], c["dim"], c["dim"]), dim, dim),
        "wk": cut(take(c["layers"], c_kv, c["dim"]), kv, dim),
        "wv": cut(take(c["layers"], c_kv, c["dim"]), kv, dim),
        "wo": cut(take(c["layers"], c["dim"], c["dim"]), dim, dim),
        "rms_ffn": cut(take(c["layers"], 1, c["dim"]), 1, dim),
        "w1": cut(take(c["layers"], c["ffn"], c["dim"]), ffn, dim),
        "w2": cut(take(c["layers"], c["dim"], c["ffn"]), dim, ffn),
        "w3": cut(take(c["layers"], c["ffn"], c["dim"]), ffn, dim),
    }
    rms_final = take(1, 1, c["dim"])[0][0][:dim]
    freq = [take(1, c["seq"], head // 2)[0][:seq] for _ in range(2)]
    assert shared or at + c["vocab"] * c["dim"] == len(floats)
    emb = [row[:dim] for row in emb[:vocab]]

    out = [struct.pack("<7i", dim, ffn, layers, heads, kv_heads, -vocab if separate else vocab, seq)]
    flat = lambda rows: b"".join(struct.pack(f"<{len(r)}f", *r) for r in rows)
    out.append(flat(emb))
    for name in ["rms_att", "wq", "wk", "wv", "wo", "rms_ffn", "w1", "w2", "w3"]:
        out.extend(flat(layer) for layer in parts[name])
    out.append(flat([rms_final]))
    out.extend(flat(f) for f in freq)
    if separate:
        out.append(flat(emb[::-1]))
    open(dst, "wb").write(b"".join(out))


main()
