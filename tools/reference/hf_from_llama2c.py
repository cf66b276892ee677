"""Write a Hugging Face `LlamaForCausalLM` directory from llama2.c's stories260K.

The directory `tests/fixtures/hf-llama/stories260K/` is what the Hugging Face tooling
would hold for the same model, so that the Rust tests can check that converting it
gives the same decoder as converting the llama2.c checkpoint:

* `config.json`: a `LlamaConfig` with the checkpoint's header values (RMSNorm eps 1e-5
  and RoPE theta 10000, which llama2.c hard-codes; tied embeddings).
* `model.safetensors`: the weights in float32 under Hugging Face's names, with the rows
  of `q_proj` and `k_proj` permuted into the half-split ("rotate_half") RoPE order that
  Hugging Face's `convert_llama_weights_to_hf.py` produces from Meta's adjacent-pair
  order: within each head of size d, output row `p * d/2 + j` is input row `2j + p`
  (`p` in {0, 1}, `j < d/2`). `k_proj` has `num_key_value_heads` heads.
* `tokenizer.json`: a Llama-2-style byte-fallback BPE tokenizer built with the
  `tokenizers` library from `tok512.bin`: `<unk>` `<s>` `</s>` as ids 0-2 (llama2.c's
  export wrote them as `"\\n<s>\\n"` and `"\\n</s>\\n"`), the 256 `<0xNN>` byte pieces,
  then the other pieces with their spaces written as U+2581 `▁`, as SentencePiece
  stores them. The merges are derived from the vocabulary as Hugging Face's
  SentencePiece converter does: every split of a merged piece into two pieces of the
  vocabulary is a merge, the merges of higher-scoring pieces first and, within a piece,
  by the ids of (left, right).

It also writes `tests/fixtures/hf-llama/stories260K-tokens.json`: the ids that the
`tokenizers` library gives (`Tokenizer.encode(text).ids`, BOS included) for every line
of `tests/fixtures/stories/heldout.txt` and a few extra strings, the golden the Rust
tokenizer test compares with.

Regenerate (from the repository root; pinned versions as in `tools/reference/README.md`):

    python3 -m venv /tmp/venv-hf
    /tmp/venv-hf/bin/pip install numpy==2.4.6 safetensors==0.8.0 tokenizers==0.23.3
    /tmp/venv-hf/bin/python tools/reference/hf_from_llama2c.py

The output is deterministic: rerunning reproduces the committed files byte for byte.
"""

import json
import os
import sys

import numpy as np
from safetensors.numpy import save_file
from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, processors

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from llama2c_checkpoint import read_checkpoint, read_tokenizer  # noqa: E402

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", ".."))
SOURCE = os.path.join(ROOT, "models", "stories260K")
OUT = os.path.join(ROOT, "tests", "fixtures", "hf-llama", "stories260K")
GOLDEN = os.path.join(ROOT, "tests", "fixtures", "hf-llama", "stories260K-tokens.json")
HELDOUT = os.path.join(ROOT, "tests", "fixtures", "stories", "heldout.txt")

# Strings beyond the held-out text: byte fallback (characters outside the vocabulary),
# characters the vocabulary has as single pieces, spaces, and the empty string.
EXTRA_TEXTS = [
    "",
    " ",
    "  two  spaces",
    "caf\u00e9 \u201cquoted\u201d \u2014 dash\u2026",
    "\u4e16\u754c and \U0001f600!",
    "Tab\tand\nnewline",
    "x",
]


def to_half_split(w, n_heads):
    """Adjacent-pair RoPE rows -> Hugging Face's half-split rows, per head.

    Row `2j + p` of a head (the pair j, element p) moves to row `p * d/2 + j`."""
    rows, cols = w.shape
    d = rows // n_heads
    return w.reshape(n_heads, d // 2, 2, cols).transpose(0, 2, 1, 3).reshape(rows, cols)


def check_rope_orders(d=8, theta=10000.0, positions=(0, 1, 5, 37)):
    """The permutation is the one that makes Hugging Face's RoPE agree with Meta's.

    Meta/llama2.c rotate the pairs (2i, 2i+1) of a head by angle pos * theta^(-2i/d);
    Hugging Face's `rotate_half` rotates (i, d/2 + i) by the same angle. Rotating a
    vector the Meta way and then permuting it must equal permuting it and rotating it
    the Hugging Face way, so attention scores are the same in both models."""
    rng = np.random.default_rng(0)
    q = rng.standard_normal((d, 1))
    half = d // 2
    freqs = theta ** (-2.0 * np.arange(half) / d)
    for pos in positions:
        cos, sin = np.cos(pos * freqs), np.sin(pos * freqs)
        meta = q[:, 0].copy()
        even, odd = q[0::2, 0], q[1::2, 0]
        meta[0::2] = even * cos - odd * sin
        meta[1::2] = odd * cos + even * sin
        hf_in = to_half_split(q, 1)[:, 0]
        first, second = hf_in[:half], hf_in[half:]
        hf = np.concatenate([first * cos - second * sin, second * cos + first * sin])
        assert np.allclose(to_half_split(meta[:, None], 1)[:, 0], hf), "RoPE orders disagree"


def write_weights(header, w):
    tensors = {"model.embed_tokens.weight": w["embed"], "model.norm.weight": w["rms_final"]}
    for l in range(header["layers"]):
        p = f"model.layers.{l}."
        tensors[p + "input_layernorm.weight"] = w["rms_att"][l]
        tensors[p + "post_attention_layernorm.weight"] = w["rms_ffn"][l]
        tensors[p + "self_attn.q_proj.weight"] = to_half_split(w["wq"][l], header["heads"])
        tensors[p + "self_attn.k_proj.weight"] = to_half_split(w["wk"][l], header["kv_heads"])
        tensors[p + "self_attn.v_proj.weight"] = w["wv"][l]
        tensors[p + "self_attn.o_proj.weight"] = w["wo"][l]
        tensors[p + "mlp.gate_proj.weight"] = w["w1"][l]
        tensors[p + "mlp.down_proj.weight"] = w["w2"][l]
        tensors[p + "mlp.up_proj.weight"] = w["w3"][l]
    if not header["shared"]:
        tensors["lm_head.weight"] = w["wcls"]
    tensors = {k: np.ascontiguousarray(v, dtype="<f4") for k, v in tensors.items()}
    save_file(tensors, os.path.join(OUT, "model.safetensors"), metadata={"format": "pt"})


def write_config(header):
    config = {
        "architectures": ["LlamaForCausalLM"],
        "attention_bias": False,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "hidden_act": "silu",
        "hidden_size": header["dim"],
        "initializer_range": 0.02,
        "intermediate_size": header["hidden"],
        "max_position_embeddings": header["seq_len"],
        "mlp_bias": False,
        "model_type": "llama",
        "num_attention_heads": header["heads"],
        "num_hidden_layers": header["layers"],
        "num_key_value_heads": header["kv_heads"],
        "rms_norm_eps": 1e-05,
        "rope_scaling": None,
        "rope_theta": 10000.0,
        "tie_word_embeddings": header["shared"],
        "torch_dtype": "float32",
        "vocab_size": header["vocab"],
    }
    with open(os.path.join(OUT, "config.json"), "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
        f.write("\n")


def build_tokenizer(entries):
    specials = ["<unk>", "<s>", "</s>"]
    vocab = {}
    scores = {}
    for i, (piece, score) in enumerate(entries):
        if i < len(specials):
            text = specials[i]
        else:
            text = piece.decode("utf-8").replace(" ", "\u2581")
        vocab[text] = i
        scores[text] = score
    # Merged pieces: the normal (not special, not byte) pieces of more than one
    # character. Every split into two vocabulary pieces is a merge.
    merged = [t for t, i in vocab.items() if i >= 3 + 256 and len(t) > 1]
    merged.sort(key=lambda t: (-scores[t], vocab[t]))
    merges = []
    for t in merged:
        splits = [(t[:k], t[k:]) for k in range(1, len(t))]
        splits = [(a, b) for a, b in splits if a in vocab and b in vocab]
        splits.sort(key=lambda ab: (vocab[ab[0]], vocab[ab[1]]))
        merges.extend(splits)

    tok = Tokenizer(
        models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True)
    )
    # Llama 2's own tokenizer.json: prepend the dummy-prefix `▁`, spaces become `▁`;
    # no pre-tokenizer, so the whole text is one word.
    tok.normalizer = normalizers.Sequence(
        [normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")]
    )
    tok.decoder = decoders.Sequence(
        [
            decoders.Replace("\u2581", " "),
            decoders.ByteFallback(),
            decoders.Fuse(),
            decoders.Strip(" ", 1, 0),
        ]
    )
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)]
    )
    tok.add_special_tokens([AddedToken(s, normalized=False, special=True) for s in specials])
    return tok


def main():
    check_rope_orders()
    os.makedirs(OUT, exist_ok=True)
    header, w = read_checkpoint(os.path.join(SOURCE, "stories260K.bin"))
    write_weights(header, w)
    write_config(header)
    entries = read_tokenizer(os.path.join(SOURCE, "tok512.bin"), header["vocab"])
    tok = build_tokenizer(entries)
    tok.save(os.path.join(OUT, "tokenizer.json"), pretty=True)

    # Reload what was written, so the golden is what the committed file gives.
    tok = Tokenizer.from_file(os.path.join(OUT, "tokenizer.json"))
    with open(HELDOUT, encoding="utf-8") as f:
        texts = [line.rstrip("\n") for line in f] + EXTRA_TEXTS
    cases = [{"text": t, "ids": tok.encode(t).ids} for t in texts]
    golden = {
        "generator": "tools/reference/hf_from_llama2c.py",
        "reference": "Hugging Face tokenizers %s, Tokenizer.encode(text).ids" % tokenizers_version(),
        "tokenizer": "tests/fixtures/hf-llama/stories260K/tokenizer.json",
        "cases": cases,
    }
    with open(GOLDEN, "w", encoding="utf-8") as f:
        f.write("{\n")
        for key in ("generator", "reference", "tokenizer"):
            f.write(" %s: %s,\n" % (json.dumps(key), json.dumps(golden[key])))
        f.write(' "cases": [\n')
        f.write(",\n".join("  " + json.dumps(c, ensure_ascii=False) for c in cases))
        f.write("\n ]\n}\n")


def tokenizers_version():
    import tokenizers

    return tokenizers.__version__


if __name__ == "__main__":
    sys.exit(main())
