"""One-off check of `llama_numpy.py` and the SmolLM2 goldens against llama.cpp.

llama.cpp (through `llama-cpp-python`, which builds it from source) evaluates the same
GGUF files; with `logits_all=True` it returns the logits of every position, compared
here with the numpy reference's logits of the same token sequence:

* stories260K (`tests/fixtures/gguf/stories260K-f32.gguf`, F32 weights): BOS and the
  first 199 ids of the reference's greedy output, with llama.cpp's default F16 KV
  cache and with an F32 one (then the difference is float32 rounding only).
* SmolLM2-135M-Instruct Q4_1 (`fetch_smollm2.py`): for every case of
  `tests/fixtures/smollm2/goldens.json`, llama.cpp's tokenization of the text (special
  tokens parsed, no BOS) must equal the golden ids, and the logits of prompt + the 32
  golden greedy ids are compared position by position, with greedy agreement
  reported against the golden margins. llama.cpp's CPU products with Q4_1/Q8_0
  weights round the activations to 8 bits (Q8_1/Q8_0 blocks), which the float
  reference does not; so
* with `--f32-copy PATH`, the Q4_1 file is also rewritten with every tensor
  dequantized to F32 (same values, 540 MB) and llama.cpp runs that with an F32 KV
  cache: the same weights without the 8-bit activations, against the reference on
  the Q4_1 file.

Measured (llama-cpp-python 0.3.36, numpy 2.4.6, gguf 0.19.0): stories260K max abs
logit diff 2.3e-05 (F32 KV), 0.027 (F16 KV), argmax equal at all 200 positions;
SmolLM2: token ids equal for all 12 prompts; F32 copy 7.8e-05 over all 12 x
(prompt + 32) positions, argmax equal everywhere; Q4_1 file 1.44 (F16 KV) / 1.89 (F32
KV), greedy argmax differing at 1-3 of the 32 steps in 6 of the 12 prompts (either KV
type), all at golden margins 0.003-0.37.

Usage (from the repository root; the llama.cpp build takes ~10-20 min on 2 cores, the
check ~2 min):

    pip install llama-cpp-python==0.3.36 gguf numpy
    python3 tools/reference/check_llama_against_llamacpp.py \
        --smollm2 "$(python3 tools/reference/fetch_smollm2.py)" --f32-copy /tmp/smollm2-f32.gguf
"""

import argparse
import json
import sys
from pathlib import Path

import gguf
import numpy as np
from llama_cpp import Llama

sys.path.insert(0, str(Path(__file__).resolve().parent))
from llama_numpy import LlamaGGUF  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def load_llamacpp(path, kv_f32):
    # type_k/type_v 0 = GGML_TYPE_F32; llama.cpp's default KV cache is F16
    kv = {"type_k": 0, "type_v": 0} if kv_f32 else {}
    return Llama(
        model_path=str(path), n_ctx=512, logits_all=True, n_threads=2, flash_attn=False,
        verbose=False, **kv,
    )


def llamacpp_logits(llm, ids):
    """Logits of every position of `ids`, evaluated from an empty context."""
    llm.reset()
    llm.eval(ids)
    return np.array(llm.scores[: len(ids)], dtype=np.float64)


def reference_logits(model, ids):
    return model.forward(ids, model.new_cache())


def check_stories(path):
    model = LlamaGGUF(path)
    greedy, _, _ = model.greedy([1], 199)
    ids = [1] + greedy
    ref = reference_logits(model, ids)
    for kv_f32 in (False, True):
        llm = load_llamacpp(path, kv_f32)
        got = llamacpp_logits(llm, ids)
        diff = np.abs(got - ref)
        same = int(np.sum(np.argmax(got, axis=1) == np.argmax(ref, axis=1)))
        print(
            f"stories260K F32, KV cache {'F32' if kv_f32 else 'F16'}: {len(ids)} positions, "
            f"max abs logit diff {diff.max():.3g} (mean {diff.mean():.3g}), "
            f"argmax equal at {same}/{len(ids)} positions"
        )


def check_smollm2(path, golden_path, kv_f32):
    golden = json.loads(Path(golden_path).read_text(encoding="utf-8"))
    model = LlamaGGUF(path)

    llm = load_llamacpp(path, kv_f32)
    worst = 0.0
    for case in golden["cases"]:
        ids = llm.tokenize(case["text"].encode("utf-8"), add_bos=False, special=True)
        tok_ok = ids == case["ids"]
        seq = case["ids"] + case["greedy"]
        ref = reference_logits(model, seq)
        got = llamacpp_logits(llm, seq)
        diff = np.abs(got - ref)
        worst = max(worst, float(diff.max()))
        n = len(case["ids"])
        # greedy steps: the logits at position n-1+s choose greedy[s]
        steps = range(len(case["greedy"]))
        cpp = [int(np.argmax(got[n - 1 + s])) for s in steps]
        disagree = [s for s in steps if cpp[s] != case["greedy"][s]]
        margins = [case["margins"][s] for s in disagree]
        last = np.abs(got[n - 1] - ref[n - 1]).max()
        print(
            f"{case['name']}: tokens {'equal' if tok_ok else 'DIFFER ' + str(ids)}, "
            f"max abs logit diff {diff.max():.3g} (last prompt position {last:.3g}), "
            f"greedy argmax differs at steps {disagree} (golden margins {margins})"
        )
    print(
        f"SmolLM2 Q4_1, KV cache {'F32' if kv_f32 else 'F16'}: "
        f"max abs logit diff over all cases and positions {worst:.3g}"
    )


def write_f32_copy(src, dst):
    """Writes `src` with every tensor dequantized to F32 (same metadata, file_type 0)."""
    r = gguf.GGUFReader(str(src))
    w = gguf.GGUFWriter(str(dst), arch="llama")
    for key, f in r.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        vtype = f.types[0]
        sub = f.types[1] if vtype == gguf.GGUFValueType.ARRAY else None
        val = 0 if key == "general.file_type" else f.contents()
        w.add_key_value(key, val, vtype, sub_type=sub)
    for t in r.tensors:
        w.add_tensor(t.name, gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def check_smollm2_f32(path, golden_path, copy_path):
    """llama.cpp on an F32 copy of the Q4_1 file (F32 KV cache) against the reference
    on the Q4_1 file itself: the same weight values with no 8-bit activations."""
    golden = json.loads(Path(golden_path).read_text(encoding="utf-8"))
    write_f32_copy(path, copy_path)
    model = LlamaGGUF(path)
    llm = load_llamacpp(copy_path, kv_f32=True)
    worst = 0.0
    for case in golden["cases"]:
        seq = case["ids"] + case["greedy"]
        got = llamacpp_logits(llm, seq)
        ref = reference_logits(model, seq)
        same = bool(np.array_equal(np.argmax(got, axis=1), np.argmax(ref, axis=1)))
        worst = max(worst, float(np.abs(got - ref).max()))
        print(f"{case['name']} (F32 copy): argmax equal at every position: {same}")
    print(f"SmolLM2 F32 copy, KV cache F32: max abs logit diff over all cases and positions {worst:.3g}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stories", default=ROOT / "tests/fixtures/gguf/stories260K-f32.gguf")
    parser.add_argument("--smollm2", help="SmolLM2-135M-Instruct.Q4_1.gguf (skipped if absent)")
    parser.add_argument("--golden", default=ROOT / "tests/fixtures/smollm2/goldens.json")
    parser.add_argument("--kv-f32", action="store_true", help="F32 KV cache for SmolLM2 (default F16)")
    parser.add_argument(
        "--f32-copy", help="also write SmolLM2 dequantized to F32 at this path (540 MB) and compare"
    )
    args = parser.parse_args()
    check_stories(args.stories)
    if args.smollm2:
        check_smollm2(args.smollm2, args.golden, args.kv_f32)
        if args.f32_copy:
            check_smollm2_f32(args.smollm2, args.golden, args.f32_copy)


if __name__ == "__main__":
    main()
