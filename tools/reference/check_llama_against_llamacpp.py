"""One-off check of `llama_numpy.py` and the SmolLM2 goldens against llama.cpp.

llama.cpp (through `llama-cpp-python`, which builds it from source) evaluates the same
GGUF files; with `logits_all=True` it returns the logits of every position, compared
here with the numpy reference's logits of the same token sequence:

* stories260K (`tests/fixtures/gguf/stories260K-f32.gguf`, F32 weights): BOS and the
  first 199 ids of the reference's greedy output; both compute in float32 (llama.cpp)
  or float64 (numpy) on the same F32 weights, so the difference is float32 rounding.
* SmolLM2-135M-Instruct Q4_1 (`fetch_smollm2.py`): for every case of
  `tests/fixtures/smollm2/goldens.json`, llama.cpp's tokenization of the text (special
  tokens parsed, no BOS) must equal the golden ids, and the logits of prompt + the 32
  golden greedy ids are compared position by position. llama.cpp's CPU matrix products
  quantize the activations to 8 bits (Q8_1 for Q4_1 weights, Q8_0 for the Q8_0
  embedding used as the output head), which the float reference does not do: the
  difference here is that rounding, not a disagreement on the model. Greedy
  agreement is reported against the golden margins.

Usage (from the repository root; ~10-20 min for the llama.cpp build on 2 cores):

    pip install llama-cpp-python==0.3.36 gguf numpy
    python3 tools/reference/check_llama_against_llamacpp.py \
        --smollm2 "$(python3 tools/reference/fetch_smollm2.py)"
"""

import argparse
import json
import sys
from pathlib import Path

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


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stories", default=ROOT / "tests/fixtures/gguf/stories260K-f32.gguf")
    parser.add_argument("--smollm2", help="SmolLM2-135M-Instruct.Q4_1.gguf (skipped if absent)")
    parser.add_argument("--golden", default=ROOT / "tests/fixtures/smollm2/goldens.json")
    parser.add_argument("--kv-f32", action="store_true", help="F32 KV cache for SmolLM2 (default F16)")
    args = parser.parse_args()
    check_stories(args.stories)
    if args.smollm2:
        check_smollm2(args.smollm2, args.golden, args.kv_f32)


if __name__ == "__main__":
    main()
