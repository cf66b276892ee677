"""SmolLM2's tokenizer on the 6,000 strings of the byte-level BPE parity goldens.

For each line of `tests/fixtures/bytebpe/goldens.jsonl` (English, code, whitespace
runs, emoji, Chinese, accented Latin, digits, very long words, contractions, special
tokens: see `bytebpe_goldens.py`), the ids that Hugging Face `tokenizers` gives with
SmolLM2-135M-Instruct's vocabulary, merges and pre-tokenizer (the tokenizer
`gguf_bytebpe.build_tokenizer` rebuilds from the GGUF; special tokens matched,
no BOS added), one line of space-separated ids per string, in the same order, to
`tests/fixtures/smollm2/tokenizer-goldens.txt`. `tools/tests/smollm2.rs` checks the
runtime's tokenizer, built by the converter from the same GGUF, against every line.

Regenerate (needs `gguf numpy tokenizers`):

    python3 tools/reference/smollm2_tokenizer_goldens.py "$(python3 tools/reference/fetch_smollm2.py)"
"""

import json
import sys
from pathlib import Path

import gguf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gguf_bytebpe import build_tokenizer  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
STRINGS = ROOT / "tests/fixtures/bytebpe/goldens.jsonl"
OUT = ROOT / "tests/fixtures/smollm2/tokenizer-goldens.txt"


def main():
    tok, _ = build_tokenizer(gguf.GGUFReader(sys.argv[1]))
    texts = [json.loads(line)["text"] for line in STRINGS.read_text(encoding="utf-8").split("\n") if line]
    with OUT.open("w") as f:
        for text in texts:
            f.write(" ".join(map(str, tok.encode(text).ids)) + "\n")
    print(f"wrote {OUT} ({len(texts)} strings)")


if __name__ == "__main__":
    main()
