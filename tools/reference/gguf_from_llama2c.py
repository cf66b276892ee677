"""Writes llama2.c's stories260K as GGUF files with the `gguf` package's writer.

The converter's GGUF path is tested against its llama2.c path on the same weights: a
GGUF written here by an independent writer (llama.cpp's own Python package) must
convert to the same tinyformer file as the llama2.c checkpoint it came from (F32), and
to a model whose logits follow it (Q8_0: the 4-byte-per-32 block rounding only).

The file is laid out as llama.cpp's converters lay out a Llama: architecture `llama`,
the `llama.*` hyperparameters, tensors `token_embd`, `blk.N.attn_{norm,q,k,v,output}`,
`blk.N.ffn_{norm,gate,up,down}`, `output_norm` (no `output`: the classifier is tied,
as in stories260K), each matrix `[out, in]` row-major (GGUF dims `[in, out]`), query
and key rows already in the adjacent-pair RoPE order (llama2.c's and GGUF's), and a
SentencePiece vocabulary (`tokenizer.ggml.model = "llama"`) with pieces spelled as
SentencePiece spells them (`U+2581` for a space; llama2.c's `tokenizer.bin` has a
plain space), scores and token types. With `--type q8_0` every matrix whose rows are
a whole number of 32-element blocks is Q8_0 (quantized by `gguf.quants`); the rest
stays F32, as llama.cpp keeps what does not fit a block type.

Regenerate (from the repository root, `pip install gguf numpy`):

    python3 tools/reference/gguf_from_llama2c.py --type f32 \
        -o tests/fixtures/gguf/stories260K-f32.gguf
    python3 tools/reference/gguf_from_llama2c.py --type q8_0 \
        -o tests/fixtures/gguf/stories260K-q8_0.gguf
"""

import argparse
import struct
from pathlib import Path

import gguf
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "models/stories260K/stories260K.bin"
TOKENIZER = ROOT / "models/stories260K/tok512.bin"


def read_checkpoint(path):
    """llama2.c version-0 checkpoint: header and tensors in file order."""
    data = path.read_bytes()
    dim, hidden, layers, heads, kv_heads, vocab, seq_len = struct.unpack_from("<7i", data)
    shared = vocab > 0
    vocab = abs(vocab)
    head_size = dim // heads
    kv_dim = kv_heads * head_size
    weights = np.frombuffer(data, dtype="<f4", offset=28)
    at = 0

    def take(*shape):
        nonlocal at
        n = int(np.prod(shape))
        out = weights[at : at + n].reshape(shape)
        at += n
        return out

    t = {"token_embd": take(vocab, dim)}
    t["attn_norm"] = take(layers, dim)
    t["attn_q"] = take(layers, dim, dim)
    t["attn_k"] = take(layers, kv_dim, dim)
    t["attn_v"] = take(layers, kv_dim, dim)
    t["attn_output"] = take(layers, dim, dim)
    t["ffn_norm"] = take(layers, dim)
    t["ffn_gate"] = take(layers, hidden, dim)  # w1
    t["ffn_down"] = take(layers, dim, hidden)  # w2
    t["ffn_up"] = take(layers, hidden, dim)  # w3
    t["output_norm"] = take(dim)
    take(seq_len, head_size // 2)  # freq_cis_real, legacy
    take(seq_len, head_size // 2)  # freq_cis_imag, legacy
    if not shared:
        t["output"] = take(vocab, dim)
    assert at == weights.size, "trailing bytes in the checkpoint"
    config = dict(dim=dim, hidden=hidden, layers=layers, heads=heads,
                  kv_heads=kv_heads, vocab=vocab, seq_len=seq_len)
    return config, t


def read_tokenizer(path, vocab):
    """llama2.c tokenizer.bin: max length, then (score f32, length i32, bytes)."""
    data = path.read_bytes()
    at = 4
    pieces, scores = [], []
    for _ in range(vocab):
        score, n = struct.unpack_from("<fi", data, at)
        at += 8
        pieces.append(data[at : at + n].decode("utf-8"))
        at += n
        scores.append(score)
    return pieces, scores


def token_type(index, piece):
    if index == 0:
        return gguf.TokenType.UNKNOWN
    if index in (1, 2):
        return gguf.TokenType.CONTROL
    if len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
        return gguf.TokenType.BYTE
    return gguf.TokenType.NORMAL


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--type", choices=["f32", "q8_0"], default="f32")
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()

    c, t = read_checkpoint(MODEL)
    pieces, scores = read_tokenizer(TOKENIZER, c["vocab"])

    w = gguf.GGUFWriter(str(args.output), "llama")
    w.add_name("stories260K")
    w.add_context_length(c["seq_len"])
    w.add_embedding_length(c["dim"])
    w.add_block_count(c["layers"])
    w.add_feed_forward_length(c["hidden"])
    w.add_head_count(c["heads"])
    w.add_head_count_kv(c["kv_heads"])
    w.add_rope_dimension_count(c["dim"] // c["heads"])
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_file_type(gguf.LlamaFileType.ALL_F32 if args.type == "f32"
                    else gguf.LlamaFileType.MOSTLY_Q8_0)
    w.add_tokenizer_model("llama")
    w.add_token_list([p.replace(" ", "\u2581") for p in pieces])
    w.add_token_scores(scores)
    w.add_token_types([token_type(i, p) for i, p in enumerate(pieces)])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)

    def add(name, array):
        array = np.ascontiguousarray(array, dtype=np.float32)
        block = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType.Q8_0][0]
        if args.type == "q8_0" and array.ndim == 2 and array.shape[1] % block == 0:
            q = gguf.quants.quantize(array, gguf.GGMLQuantizationType.Q8_0)
            w.add_tensor(name, q, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            w.add_tensor(name, array)

    add("token_embd.weight", t["token_embd"])
    for layer in range(c["layers"]):
        for key in ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output",
                    "ffn_norm", "ffn_gate", "ffn_up", "ffn_down"):
            add(f"blk.{layer}.{key}.weight", t[key][layer])
    add("output_norm.weight", t["output_norm"])
    if "output" in t:
        add("output.weight", t["output"])

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"wrote {args.output} ({args.output.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
