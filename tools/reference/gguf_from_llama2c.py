"""Writes llama2.c's stories260K as GGUF files with the `gguf` package's writer.

The converter's GGUF path is tested against its llama2.c path on the same weights: a
GGUF written here by an independent writer (llama.cpp's own Python package) must
convert to the same tinyformer file as the llama2.c checkpoint it came from (F32), and
to a model whose logits follow it up to the blocks' rounding (Q8_0, Q4_1).

The file is laid out as llama.cpp's converters lay out a Llama: architecture `llama`,
the `llama.*` hyperparameters, tensors `token_embd`, `blk.N.attn_{norm,q,k,v,output}`,
`blk.N.ffn_{norm,gate,up,down}`, `output_norm` (no `output`: the classifier is tied,
as in stories260K), each matrix `[out, in]` row-major (GGUF dims `[in, out]`), query
and key rows already in the adjacent-pair RoPE order (llama2.c's and GGUF's), and a
SentencePiece vocabulary (`tokenizer.ggml.model = "llama"`) with pieces spelled as
SentencePiece spells them (`U+2581` for a space; llama2.c's `tokenizer.bin` has a
plain space), scores and token types. With `--type q8_0` (or `q4_0`, `q4_1`) every
matrix whose rows are a whole number of 32-element blocks is in that block type
(quantized by `gguf.quants`); the rest stays F32, as llama.cpp keeps what does not fit
a block type.

Regenerate (from the repository root, `pip install gguf numpy`):

    python3 tools/reference/gguf_from_llama2c.py --type f32 \
        -o tests/fixtures/gguf/stories260K-f32.gguf
    python3 tools/reference/gguf_from_llama2c.py --type q8_0 \
        -o tests/fixtures/gguf/stories260K-q8_0.gguf
    python3 tools/reference/gguf_from_llama2c.py --type q4_1 \
        -o tests/fixtures/gguf/stories260K-q4_1.gguf
"""

import argparse
import sys
from pathlib import Path

import gguf
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from llama2c_checkpoint import read_checkpoint, read_tokenizer  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "models/stories260K/stories260K.bin"
TOKENIZER = ROOT / "models/stories260K/tok512.bin"


# Block types by option, with llama.cpp's file-type tag.
TYPES = {
    "f32": (None, gguf.LlamaFileType.ALL_F32),
    "q8_0": (gguf.GGMLQuantizationType.Q8_0, gguf.LlamaFileType.MOSTLY_Q8_0),
    "q4_0": (gguf.GGMLQuantizationType.Q4_0, gguf.LlamaFileType.MOSTLY_Q4_0),
    "q4_1": (gguf.GGMLQuantizationType.Q4_1, gguf.LlamaFileType.MOSTLY_Q4_1),
}


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
    parser.add_argument("--type", choices=list(TYPES), default="f32")
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--model", type=Path, default=MODEL,
                        help="llama2.c checkpoint (default: stories260K)")
    parser.add_argument("--tokenizer", type=Path, default=TOKENIZER,
                        help="its tokenizer.bin (the first vocab_size tokens are read)")
    args = parser.parse_args()

    c, t = read_checkpoint(args.model)
    entries = read_tokenizer(args.tokenizer, c["vocab"])
    pieces = [piece.decode("utf-8") for piece, _ in entries]
    scores = [score for _, score in entries]

    w = gguf.GGUFWriter(str(args.output), "llama")
    w.add_name(args.model.stem)
    w.add_context_length(c["seq_len"])
    w.add_embedding_length(c["dim"])
    w.add_block_count(c["layers"])
    w.add_feed_forward_length(c["hidden"])
    w.add_head_count(c["heads"])
    w.add_head_count_kv(c["kv_heads"])
    w.add_rope_dimension_count(c["dim"] // c["heads"])
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    qtype, file_type = TYPES[args.type]
    w.add_file_type(file_type)
    w.add_tokenizer_model("llama")
    w.add_token_list([p.replace(" ", "\u2581") for p in pieces])
    w.add_token_scores(scores)
    w.add_token_types([token_type(i, p) for i, p in enumerate(pieces)])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)

    def add(name, array):
        array = np.ascontiguousarray(array, dtype=np.float32)
        if qtype is not None and array.ndim == 2 \
                and array.shape[1] % gguf.GGML_QUANT_SIZES[qtype][0] == 0:
            w.add_tensor(name, gguf.quants.quantize(array, qtype), raw_dtype=qtype)
        else:
            w.add_tensor(name, array)

    add("token_embd.weight", t["embed"])
    names = dict(attn_norm="rms_att", attn_q="wq", attn_k="wk", attn_v="wv",
                 attn_output="wo", ffn_norm="rms_ffn", ffn_gate="w1", ffn_up="w3",
                 ffn_down="w2")
    for layer in range(c["layers"]):
        for name, key in names.items():
            add(f"blk.{layer}.{name}.weight", t[key][layer])
    add("output_norm.weight", t["rms_final"])
    if not c["shared"]:
        add("output.weight", t["wcls"])

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"wrote {args.output} ({args.output.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
