"""Shrink a tiny BERT checkpoint fixture to a seed-sized one for the fuzz corpora.

    python3 fuzz/shrink_checkpoint.py tests/fixtures/tiny-bert-cls OUT_DIR

Keeps the first VOCAB tokens, HIDDEN hidden units (HEADS heads), FFN intermediate
units and POSITIONS positions of every tensor (leading slices of the real weights,
so the model still behaves like a trained-shape BERT), and writes config.json,
model.safetensors (F32, plus any integer buffer sliced the same way), vocab.txt and
the tokenizer/pooling configs. Standard library only; deterministic.
"""

import json
import os
import shutil
import struct
import sys

VOCAB, HIDDEN, HEADS, FFN, POSITIONS = 384, 16, 2, 32, 16


def read_safetensors(path):
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    body = data[8 + n :]
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        tensors[name] = (info["dtype"], info["shape"], body[start:end])
    return header.get("__metadata__"), tensors


def write_safetensors(path, metadata, tensors):
    header, blobs, offset = {}, [], 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name in sorted(tensors):
        dtype, shape, blob = tensors[name]
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def new_len(name, axis, old):
    """The kept length of one axis of tensor `name`."""
    if "word_embeddings" in name and axis == 0:
        return VOCAB
    if "position_embeddings" in name and axis == 0:
        return POSITIONS
    if "position_ids" in name:
        return old if axis == 0 else POSITIONS
    if "token_type" in name and axis == 0:
        return old
    if "classifier" in name and axis == 0:
        return old
    if "intermediate.dense" in name and axis == 0:
        return FFN
    if "output.dense" in name and "attention" not in name and axis == 1:
        return FFN
    return HIDDEN


def slice_tensor(name, dtype, shape, blob):
    size = {"F32": 4, "I64": 8}[dtype]
    if len(shape) == 1:
        n = new_len(name, 0, shape[0])
        return [n], blob[: n * size]
    rows, cols = shape
    r, c = new_len(name, 0, rows), new_len(name, 1, cols)
    out = b"".join(blob[i * cols * size : (i * cols + c) * size] for i in range(r))
    return [r, c], out


def main(src, dst):
    os.makedirs(dst, exist_ok=True)
    metadata, tensors = read_safetensors(os.path.join(src, "model.safetensors"))
    small = {}
    for name, (dtype, shape, blob) in tensors.items():
        new_shape, new_blob = slice_tensor(name, dtype, shape, blob)
        small[name] = (dtype, new_shape, new_blob)
    write_safetensors(os.path.join(dst, "model.safetensors"), metadata, small)
    config = json.load(open(os.path.join(src, "config.json")))
    config.update(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        num_attention_heads=HEADS,
        intermediate_size=FFN,
        max_position_embeddings=POSITIONS,
    )
    json.dump(config, open(os.path.join(dst, "config.json"), "w"), indent=2)
    vocab = open(os.path.join(src, "vocab.txt"), encoding="utf-8").read().split("\n")[:VOCAB]
    open(os.path.join(dst, "vocab.txt"), "w", encoding="utf-8").write("\n".join(vocab) + "\n")
    for extra in ["tokenizer_config.json", "modules.json", "1_Pooling"]:
        path = os.path.join(src, extra)
        if os.path.isdir(path):
            shutil.copytree(path, os.path.join(dst, extra), dirs_exist_ok=True)
        elif os.path.exists(path):
            shutil.copy(path, os.path.join(dst, extra))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
