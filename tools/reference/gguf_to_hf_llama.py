"""Writes a Llama GGUF as a Hugging Face `LlamaForCausalLM` directory (float32).

Reads the GGUF with the `gguf` package (`gguf.GGUFReader`) and dequantizes every tensor
with `gguf.quants.dequantize` (F32, F16, Q8_0, Q4_0, Q4_1, ...), so the directory holds
exactly the weights the GGUF's blocks encode, as float32. It writes to `OUT_DIR`:

* `model.safetensors`: Hugging Face's names (`model.embed_tokens.weight`,
  `model.layers.N.self_attn.q_proj.weight`, ..., `model.norm.weight`, and
  `lm_head.weight` only when the GGUF has `output.weight`, i.e. when not tied), each
  matrix `[out, in]` as GGUF holds it, except that the rows of `q_proj` and `k_proj`
  go back from GGUF's adjacent-pair RoPE order to Hugging Face's half-split order: the
  inverse of llama.cpp's `convert_hf_to_gguf.py` `LlamaModel.permute`, per head of
  `d` rows, `hf_row[p * d/2 + i] = gguf_row[2i + p]` for `p` in {0, 1}, `i < d/2`.
* `config.json`: `LlamaConfig`'s fields from the `llama.*` keys (`hidden_size`,
  `intermediate_size`, `num_hidden_layers`, `num_attention_heads`,
  `num_key_value_heads`, `rms_norm_eps`, `rope_theta`, `max_position_embeddings`,
  `vocab_size`, `tie_word_embeddings`, BOS/EOS ids, `architectures`), floats as the
  GGUF's float32 values.
* `tokenizer.json`: the byte-level BPE vocabulary (`tokenizer.ggml.model = "gpt2"`)
  rebuilt by `gguf_bytebpe.build_tokenizer` (vocabulary, merges, the
  `tokenizer.ggml.pre` split, CONTROL/USER_DEFINED tokens as special added tokens), and
  `tokenizer_config.json` (BOS/EOS tokens, `add_bos_token`).

Refused (errors): an architecture other than `llama`, a SentencePiece vocabulary
(`tokenizer.ggml.model = "llama"`; `hf_from_llama2c.py` writes that form),
`tokenizer.ggml.add_bos_token = true` (the `tokenizer.json` written here adds no BOS),
RoPE over part of the head, rope scaling, biases.

Used for `tests/fixtures/bytebpe-llama/hf/` (`bytebpe_llama_fixture.py`) and by
`tools/tests/smollm2.rs` on SmolLM2 (CI: `tools/smollm2-check.sh`): the GGUF and the
directory written from it must convert to the same model.

Usage (`pip install gguf numpy safetensors tokenizers`; tested with gguf 0.19.0,
numpy 2.4.6, safetensors 0.8.0, tokenizers 0.23.3):

    python3 tools/reference/gguf_to_hf_llama.py MODEL.gguf OUT_DIR
"""

import argparse
import json
import sys
from pathlib import Path

import gguf
import numpy as np
from safetensors.numpy import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gguf_bytebpe import build_tokenizer  # noqa: E402

# GGUF name after `blk.N.` -> Hugging Face name after `model.layers.N.`.
LAYER_NAMES = {
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}


def to_half_split(w, heads):
    """Rows of `heads` heads from adjacent-pair RoPE order to Hugging Face's half-split
    order: within a head, the rows `2i` (i < d/2) first, then the rows `2i + 1`."""
    rows, cols = w.shape
    d = rows // heads
    return w.reshape(heads, d // 2, 2, cols).swapaxes(1, 2).reshape(rows, cols)


def field(reader, key, default=None):
    f = reader.fields.get(key)
    return default if f is None else f.contents()


def read_weights(reader):
    """Every tensor of the GGUF dequantized to float32, shape `[out, in]` (GGUF dims
    reversed), by GGUF name."""
    out = {}
    for t in reader.tensors:
        a = gguf.quants.dequantize(t.data, t.tensor_type)
        shape = tuple(int(n) for n in t.shape)[::-1]
        if a.shape != shape:
            raise ValueError(f"{t.name}: dequantized shape {a.shape}, GGUF dims reversed {shape}")
        out[t.name] = np.ascontiguousarray(a, dtype=np.float32)
    return out


def convert(path, out_dir):
    reader = gguf.GGUFReader(str(path))
    arch = field(reader, "general.architecture")
    if arch != "llama":
        raise SystemExit(f"{path}: general.architecture is {arch!r}, not 'llama'")
    if field(reader, "llama.rope.scaling.type", "none") not in ("none", None):
        raise SystemExit(f"{path}: llama.rope.scaling.type is set: rope scaling is not supported")
    if field(reader, "tokenizer.ggml.add_bos_token", False):
        raise SystemExit(f"{path}: tokenizer.ggml.add_bos_token is true: not supported")
    tok, added = build_tokenizer(reader)  # refuses a SentencePiece vocabulary

    layers = int(field(reader, "llama.block_count"))
    hidden = int(field(reader, "llama.embedding_length"))
    heads = int(field(reader, "llama.attention.head_count"))
    kv_heads = int(field(reader, "llama.attention.head_count_kv", heads))
    head_dim = hidden // heads
    rot = int(field(reader, "llama.rope.dimension_count", head_dim))
    if rot != head_dim:
        raise SystemExit(f"{path}: llama.rope.dimension_count {rot}: only RoPE over the whole head ({head_dim})")
    tokens = field(reader, "tokenizer.ggml.tokens")
    bos = int(field(reader, "tokenizer.ggml.bos_token_id", 1))
    eos = int(field(reader, "tokenizer.ggml.eos_token_id", 2))

    w = read_weights(reader)
    if any(name.endswith(".bias") for name in w):
        raise SystemExit(f"{path}: has biases: not supported")
    tied = "output.weight" not in w
    st = {
        "model.embed_tokens.weight": w.pop("token_embd.weight"),
        "model.norm.weight": w.pop("output_norm.weight"),
    }
    if not tied:
        st["lm_head.weight"] = w.pop("output.weight")
    for n in range(layers):
        for gguf_name, hf_name in LAYER_NAMES.items():
            t = w.pop(f"blk.{n}.{gguf_name}.weight")
            if gguf_name == "attn_q":
                t = to_half_split(t, heads)
            elif gguf_name == "attn_k":
                t = to_half_split(t, kv_heads)
            st[f"model.layers.{n}.{hf_name}.weight"] = np.ascontiguousarray(t)
    if w:
        raise SystemExit(f"{path}: tensors not in a Llama: {sorted(w)}")

    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": hidden,
        "intermediate_size": int(field(reader, "llama.feed_forward_length")),
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "hidden_act": "silu",
        "rms_norm_eps": float(field(reader, "llama.attention.layer_norm_rms_epsilon")),
        "rope_theta": float(field(reader, "llama.rope.freq_base", 10000.0)),
        "rope_scaling": None,
        "max_position_embeddings": int(field(reader, "llama.context_length")),
        "vocab_size": len(tokens),
        "tie_word_embeddings": tied,
        "bos_token_id": bos,
        "eos_token_id": eos,
        "attention_bias": False,
        "mlp_bias": False,
        "torch_dtype": "float32",
    }
    tokenizer_config = {
        "tokenizer_class": "GPT2Tokenizer",
        "add_bos_token": False,
        "bos_token": tokens[bos],
        "eos_token": tokens[eos],
        "additional_special_tokens": added,
        "model_max_length": config["max_position_embeddings"],
        "clean_up_tokenization_spaces": False,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(st, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (out_dir / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2) + "\n")
    tok.save(str(out_dir / "tokenizer.json"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("gguf", type=Path)
    parser.add_argument("out_dir", type=Path)
    args = parser.parse_args()
    convert(args.gguf, args.out_dir)
    print(f"wrote {args.out_dir}", file=sys.stderr)


if __name__ == "__main__":
    main()
