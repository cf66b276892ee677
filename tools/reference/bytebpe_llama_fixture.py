"""The byte-level BPE Llama fixture `tests/fixtures/bytebpe-llama/`: one tiny random
Llama as GGUF in every tensor type the converter reads and as a Hugging Face directory,
with float64 goldens.

The model: 2 layers, hidden 64, 4 query / 2 key-value heads (head dim 16), ffn 96,
context 128, RoPE base 10000, RMS eps 1e-5, tied embeddings, weights seeded random
(`SEED`; embeddings N(0, 1), matrices N(0, 1/in), norm gains 1 + N(0, 0.1)). Its
vocabulary is the first `VOCAB` (384) ids of the byte-level BPE fixture
`tests/fixtures/bytebpe/tokenizer.json` (SmolLM2's pre-tokenizer; `<|endoftext|>` 0,
`<|im_start|>` 1, `<|im_end|>` 2, the 256 byte tokens, then the pieces of the first
125 merges, which that file numbers in merge order, so the cut is itself a BPE
tokenizer), BOS `<|im_start|>`, EOS `<|im_end|>`, no BOS added: SmolLM2's settings.

Written here:

* `tiny-{f32,f16,q8_0,q4_0,q4_1}.gguf`: the model with llama.cpp's `gguf` writer, every
  matrix in that type (`gguf.quants.quantize`; rows of 64 and 96 are 2 and 3 whole 32-blocks),
  norm gains F32, as llama.cpp lays out a `llama` with a `gpt2` vocabulary
  (`tokenizer.ggml.pre = "smollm"`, CONTROL token types for the three specials).
* `hf/`: `tiny-f32.gguf` written by `gguf_to_hf_llama.py` as a `LlamaForCausalLM`
  directory (f32 `model.safetensors` with half-split q/k rows, `config.json`,
  `tokenizer.json` from `gguf_bytebpe.build_tokenizer`, `tokenizer_config.json`).
* `goldens.json`: per prompt (`PROMPTS`) the text and its ids from Hugging Face
  `tokenizers` (the `hf/tokenizer.json` just written; special tokens matched, no BOS),
  and, per type, how far float32 lands from float64 in the reference.
* `logits-<type>.f32`: the last-position logits of every prompt, prompt after prompt,
  `VOCAB` little-endian float32 each, from the float64 numpy Llama of
  `llama_numpy.py` over that GGUF's dequantized weights.

Regenerate (from the repository root; `pip install gguf numpy safetensors tokenizers`;
tested with gguf 0.19.0, numpy 2.4.6, safetensors 0.8.0, tokenizers 0.23.3;
deterministic, a few seconds):

    python3 tools/reference/bytebpe_llama_fixture.py
"""

import json
import shutil
import sys
from pathlib import Path

import gguf
import numpy as np
from tokenizers import Tokenizer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gguf_to_hf_llama import convert  # noqa: E402
from llama_numpy import LlamaGGUF  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SOURCE_TOKENIZER = ROOT / "tests/fixtures/bytebpe/tokenizer.json"
OUT = ROOT / "tests/fixtures/bytebpe-llama"

SEED = 12
VOCAB = 384
LAYERS, HIDDEN, HEADS, KV_HEADS, FFN, CONTEXT = 2, 64, 4, 2, 96, 128
BOS, EOS = 1, 2

TYPES = {
    "f32": (None, gguf.LlamaFileType.ALL_F32),
    "f16": (gguf.GGMLQuantizationType.F16, gguf.LlamaFileType.MOSTLY_F16),
    "q8_0": (gguf.GGMLQuantizationType.Q8_0, gguf.LlamaFileType.MOSTLY_Q8_0),
    "q4_0": (gguf.GGMLQuantizationType.Q4_0, gguf.LlamaFileType.MOSTLY_Q4_0),
    "q4_1": (gguf.GGMLQuantizationType.Q4_1, gguf.LlamaFileType.MOSTLY_Q4_1),
}

PROMPTS = [
    "The quick brown fox jumps over the lazy dog.",
    "In 2024, 7 trains left at 12:45.",
    "<|im_start|>user\nWhat is the boiling point of water?<|im_end|>\n<|im_start|>assistant\n",
    "def f(x):\n    return x * 3.14  # café, 東京 🙂",
]


def vocabulary():
    """(tokens by id, merges "a b", added ids) of the first VOCAB ids of the fixture."""
    j = json.loads(SOURCE_TOKENIZER.read_text(encoding="utf-8"))
    by_id = {i: t for t, i in j["model"]["vocab"].items()}
    for a in j["added_tokens"]:
        by_id[a["id"]] = a["content"]
    tokens = [by_id[i] for i in range(VOCAB)]
    index = {t: i for i, t in enumerate(tokens)}
    merges = []
    for left, right in j["model"]["merges"]:
        if index.get(left + right, VOCAB) >= VOCAB:
            break
        merges.append(f"{left} {right}")
    added = [a["id"] for a in j["added_tokens"] if a["id"] < VOCAB]
    assert len(merges) == VOCAB - 256 - len(added), len(merges)
    return tokens, merges, added


def weights():
    rng = np.random.default_rng(SEED)
    kv = HIDDEN // HEADS * KV_HEADS

    def matrix(rows, cols):
        return rng.normal(0.0, 1.0 / np.sqrt(cols), (rows, cols))

    def gain():
        return 1.0 + rng.normal(0.0, 0.1, HIDDEN)

    w = {"token_embd.weight": rng.normal(0.0, 1.0, (VOCAB, HIDDEN))}
    for n in range(LAYERS):
        p = f"blk.{n}."
        w[p + "attn_norm.weight"] = gain()
        w[p + "attn_q.weight"] = matrix(HIDDEN, HIDDEN)
        w[p + "attn_k.weight"] = matrix(kv, HIDDEN)
        w[p + "attn_v.weight"] = matrix(kv, HIDDEN)
        w[p + "attn_output.weight"] = matrix(HIDDEN, HIDDEN)
        w[p + "ffn_norm.weight"] = gain()
        w[p + "ffn_gate.weight"] = matrix(FFN, HIDDEN)
        w[p + "ffn_up.weight"] = matrix(FFN, HIDDEN)
        w[p + "ffn_down.weight"] = matrix(HIDDEN, FFN)
    w["output_norm.weight"] = gain()
    return {k: v.astype(np.float32) for k, v in w.items()}


def write_gguf(path, kind, w, tokens, merges, added):
    qtype, file_type = TYPES[kind]
    g = gguf.GGUFWriter(str(path), "llama")
    g.add_name("bytebpe-llama tiny random")
    g.add_context_length(CONTEXT)
    g.add_embedding_length(HIDDEN)
    g.add_block_count(LAYERS)
    g.add_feed_forward_length(FFN)
    g.add_head_count(HEADS)
    g.add_head_count_kv(KV_HEADS)
    g.add_rope_dimension_count(HIDDEN // HEADS)
    g.add_rope_freq_base(10000.0)
    g.add_layer_norm_rms_eps(1e-5)
    g.add_file_type(file_type)
    g.add_tokenizer_model("gpt2")
    g.add_tokenizer_pre("smollm")
    g.add_token_list(tokens)
    g.add_token_types(
        [gguf.TokenType.CONTROL if i in added else gguf.TokenType.NORMAL for i in range(VOCAB)]
    )
    g.add_token_merges(merges)
    g.add_bos_token_id(BOS)
    g.add_eos_token_id(EOS)
    g.add_add_bos_token(False)
    for name, array in w.items():
        if qtype is None or array.ndim == 1:
            g.add_tensor(name, array)
        elif qtype == gguf.GGMLQuantizationType.F16:
            g.add_tensor(name, array.astype(np.float16))
        else:
            g.add_tensor(name, gguf.quants.quantize(array, qtype), raw_dtype=qtype)
    g.write_header_to_file()
    g.write_kv_data_to_file()
    g.write_tensors_to_file()
    g.close()


def main():
    tokens, merges, added = vocabulary()
    w = weights()
    OUT.mkdir(parents=True, exist_ok=True)
    for kind in TYPES:
        write_gguf(OUT / f"tiny-{kind}.gguf", kind, w, tokens, merges, added)
    shutil.rmtree(OUT / "hf", ignore_errors=True)
    convert(OUT / "tiny-f32.gguf", OUT / "hf")

    tok = Tokenizer.from_file(str(OUT / "hf/tokenizer.json"))
    ids = [tok.encode(p, add_special_tokens=False).ids for p in PROMPTS]
    for p, i in zip(PROMPTS, ids):
        assert tok.decode(i, skip_special_tokens=False) == p, p
    f32_diff = {}
    for kind in TYPES:
        path = OUT / f"tiny-{kind}.gguf"
        last = {}
        for dtype in (np.float64, np.float32):
            model = LlamaGGUF(path, dtype=dtype)
            last[dtype] = np.stack([model.forward(i, model.new_cache())[-1] for i in ids])
        f32_diff[kind] = float(f"{np.max(np.abs(last[np.float32] - last[np.float64])):.3g}")
        last[np.float64].astype("<f4").tofile(OUT / f"logits-{kind}.f32")
    goldens = {
        "generator": "python3 tools/reference/bytebpe_llama_fixture.py",
        "reference": "float64 numpy Llama (tools/reference/llama_numpy.py) over each GGUF's "
        "weights dequantized by gguf.quants; ids from Hugging Face tokenizers with hf/tokenizer.json "
        "(special tokens matched, no BOS)",
        "vocab": VOCAB,
        "types": list(TYPES),
        "logits_files": {kind: f"logits-{kind}.f32" for kind in TYPES},
        "float32_max_abs_diff": f32_diff,
        "prompts": [{"text": p, "ids": i} for p, i in zip(PROMPTS, ids)],
    }
    (OUT / "goldens.json").write_text(
        json.dumps(goldens, indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    total = sum(f.stat().st_size for f in OUT.rglob("*") if f.is_file())
    print(f"wrote {OUT} ({total} bytes); float32 vs float64: {f32_diff}", file=sys.stderr)


if __name__ == "__main__":
    main()
