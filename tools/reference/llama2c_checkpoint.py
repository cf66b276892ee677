"""Reading llama2.c's files (the version-0 checkpoint and `tokenizer.bin`) with numpy:
shared by the scripts that rewrite stories260K in other formats
(`hf_from_llama2c.py`, `gguf_from_llama2c.py`)."""

import struct

import numpy as np


def read_checkpoint(path):
    """llama2.c version-0 checkpoint -> (header dict, dict of per-layer numpy arrays)."""
    with open(path, "rb") as f:
        data = f.read()
    dim, hidden, layers, heads, kv_heads, vocab, seq_len = struct.unpack_from("<7i", data, 0)
    shared = vocab > 0
    vocab = abs(vocab)
    head = dim // heads
    kv_dim = kv_heads * head
    floats = np.frombuffer(data, dtype="<f4", offset=28)
    at = 0

    def take(count, shape):
        nonlocal at
        out = floats[at : at + count].reshape(shape).copy()
        at += count
        return out

    w = {}
    w["embed"] = take(vocab * dim, (vocab, dim))
    w["rms_att"] = take(layers * dim, (layers, dim))
    w["wq"] = take(layers * dim * dim, (layers, dim, dim))
    w["wk"] = take(layers * kv_dim * dim, (layers, kv_dim, dim))
    w["wv"] = take(layers * kv_dim * dim, (layers, kv_dim, dim))
    w["wo"] = take(layers * dim * dim, (layers, dim, dim))
    w["rms_ffn"] = take(layers * dim, (layers, dim))
    w["w1"] = take(layers * hidden * dim, (layers, hidden, dim))
    w["w2"] = take(layers * dim * hidden, (layers, dim, hidden))
    w["w3"] = take(layers * hidden * dim, (layers, hidden, dim))
    w["rms_final"] = take(dim, (dim,))
    at += seq_len * head  # the legacy freq_cis_real and freq_cis_imag tables
    if not shared:
        w["wcls"] = take(vocab * dim, (vocab, dim))
    assert at == floats.size, "checkpoint length"
    header = dict(
        dim=dim,
        hidden=hidden,
        layers=layers,
        heads=heads,
        kv_heads=kv_heads,
        vocab=vocab,
        seq_len=seq_len,
        shared=shared,
    )
    return header, w


def read_tokenizer(path, vocab_size):
    """tok512.bin -> list of (piece bytes, score)."""
    with open(path, "rb") as f:
        data = f.read()
    at = 4
    out = []
    for _ in range(vocab_size):
        score, length = struct.unpack_from("<fi", data, at)
        at += 8
        out.append((data[at : at + length], score))
        at += length
    return out
