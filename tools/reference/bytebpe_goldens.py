#!/usr/bin/env python3
"""Reference data for tinyformer's byte-level BPE tokenizer (`src/tokenizer/bytebpe.rs`).

Everything comes from Hugging Face `tokenizers` (the Rust library behind GPT-2's,
SmolLM2's and Qwen's fast tokenizers), the behaviour tinyformer must reproduce id for id:

* ``tables`` -> ``src/tokenizer/bytebpe_tables.rs``: the character classes GPT-2's
  pre-tokenizer regex uses (``\\p{L}``, ``\\p{N}``, ``\\s``) and the chars HF's
  ``Digits`` pre-tokenizer isolates, found by *probing* HF's ``ByteLevel`` and
  ``Digits`` pre-tokenizers with every Unicode scalar value. Probing, not Python's
  ``unicodedata``, because HF's regex engine (Oniguruma) and Rust's ``char`` methods
  carry their own Unicode versions; the differences to ``unicodedata`` are printed.
* ``goldens`` -> ``tests/fixtures/bytebpe/``: ``tokenizer.json``, a byte-level BPE
  tokenizer *trained with* ``tokenizers.trainers.BpeTrainer`` (4,000 tokens) on text
  this script generates plus repository files (``tests/fixtures/stories/*.txt``,
  ``tests/fixtures/sentences.txt``, a few sources of ``src/tokenizer/``), with SmolLM2's
  pre-tokenizer ``Sequence([Digits(individual_digits=True),
  ByteLevel(add_prefix_space=False, use_regex=True)])``, the ``ByteLevel`` decoder, and
  the special tokens ``<|endoftext|>``, ``<|im_start|>``, ``<|im_end|>``; and
  ``goldens.jsonl``, one ``{"text", "ids", "plain_ids", "decoded", "gpt2_ids"}`` per
  line: ``ids`` = ``encode(text).ids`` (special tokens matched), ``plain_ids`` the same
  with ``encode_special_tokens = True`` (special tokens as plain text), ``decoded`` =
  ``decode(ids, skip_special_tokens=False)``, and ``gpt2_ids`` = the ids with GPT-2's
  pre-tokenizer (``ByteLevel`` alone, no ``Digits``) over the same model. The last
  three are only written where they differ from ``ids`` (``decoded``: from ``text``).
  ``tests/bytebpe_parity.rs`` checks tinyformer against every line.

Regenerate (from the repository root)::

    python3 -m venv /tmp/venv-bbpe
    /tmp/venv-bbpe/bin/pip install tokenizers numpy
    /tmp/venv-bbpe/bin/python tools/reference/bytebpe_goldens.py all
    cargo test --test bytebpe_parity   # bytebpe_tables.rs is rustfmt-ed by the script

The golden strings come from a fixed seed, so ``goldens.jsonl`` is the same for a given
``tokenizer.json`` and ``tokenizers`` version (made with 0.23.3). Training is *not*
reproducible: ``BpeTrainer`` breaks ties between equally frequent pairs in hash-map
order, so two runs give equivalent but differently numbered vocabularies. ``goldens``
therefore reuses the committed ``tokenizer.json`` and only trains when it is missing or
``--retrain`` is given (then commit both files together).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import random
import subprocess
import sys
import unicodedata

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
TABLES_RS = os.path.join(ROOT, "src", "tokenizer", "bytebpe_tables.rs")
FIXTURE_DIR = os.path.join(ROOT, "tests", "fixtures", "bytebpe")
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
VOCAB_SIZE = 4000
GOLDEN_COUNT = 6000

# Class codes of the generated run table (see `bytebpe_tables.rs`).
OTHER, LETTER, NUMBER, SPACE = 0, 1, 2, 3


def all_scalars():
    """Every Unicode scalar value (no surrogates: they cannot be in a `str` HF takes)."""
    return [cp for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF]


def probe():
    """Class of every scalar per HF's ByteLevel regex, and whether Digits isolates it."""
    from tokenizers import pre_tokenizers as pt

    byte_level = pt.ByteLevel(add_prefix_space=False, use_regex=True)
    digits = pt.Digits(individual_digits=True)
    split = byte_level.pre_tokenize_str
    classes, digit = {}, set()
    for cp in all_scalars():
        c = chr(cp)
        # ` ?\p{L}+` keeps "a" and c together only if c is a letter; likewise "0" for
        # ` ?\p{N}+` and "!" for ` ?[^\s\p{L}\p{N}]+`. What joins none of them is `\s`.
        if len(split("a" + c)) == 1:
            cls = LETTER
        elif len(split("0" + c)) == 1:
            cls = NUMBER
        elif len(split("!" + c)) == 1:
            cls = OTHER
        else:
            cls = SPACE
        classes[cp] = cls
        if len(digits.pre_tokenize_str("a" + c + "a")) == 3:
            digit.add(cp)
    return classes, digit


def unicodedata_class(cp):
    c = chr(cp)
    cat = unicodedata.category(c)
    if cat.startswith("L"):
        return LETTER
    if cat.startswith("N"):
        return NUMBER
    if c.isspace() or cp in (0x85,):
        return SPACE
    return OTHER


def runs(values):
    """[(start, value)] for each maximal run of equal values over all scalars (the
    surrogate gap continues the run before it: no valid UTF-8 decodes to it)."""
    out, prev = [], None
    for cp in all_scalars():
        v = values(cp)
        if v != prev:
            out.append((cp, v))
            prev = v
    return out


def build_tables():
    import tokenizers

    classes, digit = probe()
    diffs = [cp for cp in classes if classes[cp] != unicodedata_class(cp)]
    print(f"  {len(diffs)} scalars classed differently from unicodedata {unicodedata.unidata_version}"
          f" (first: {[hex(d) for d in diffs[:12]]})")
    class_runs = runs(lambda cp: classes[cp])
    digit_runs = [start for start, v in runs(lambda cp: cp in digit)]
    # The first run starts at 0 and is "not a digit"; starts alternate after it.
    assert runs(lambda cp: cp in digit)[0] == (0, False)
    print(f"  class runs {len(class_runs)}, digit run starts {len(digit_runs)},"
          f" digits {len(digit)}, ascii digits only: {digit == set(range(0x30, 0x3A))}")
    lines = [
        "//! Unicode tables for the byte-level BPE pre-tokenizers.",
        "//!",
        "//! GENERATED by `tools/reference/bytebpe_goldens.py tables`; do not edit.",
        f"//! Probed from Hugging Face `tokenizers` {tokenizers.__version__} code point by code point",
        "//! (see the script for why probing rather than a Unicode version).",
        "",
        "#![allow(clippy::unreadable_literal)]",
        "",
        "/// GPT-2 regex classes as runs: `start << 2 | class`, sorted by start, first start 0.",
        "/// Classes: 0 other (`[^\\s\\p{L}\\p{N}]`), 1 letter (`\\p{L}`), 2 number (`\\p{N}`),",
        "/// 3 whitespace (`\\s`).",
        f"pub(crate) static CLASS_RUNS: [u32; {len(class_runs)}] = [",
    ]
    lines += [f"    {start << 2 | v:#010x}," for start, v in class_runs]
    lines += [
        "];",
        "",
        "/// Chars HF's `Digits(individual_digits=True)` isolates: run starts, sorted;",
        "/// a char is a digit when an odd number of starts are `<=` it (the first run,",
        "/// from 0, is not digits).",
        f"pub(crate) static DIGIT_RUN_STARTS: [u32; {len(digit_runs) - 1}] = [",
    ]
    lines += [f"    {start:#08x}," for start in digit_runs[1:]]
    lines += ["];", ""]
    with open(TABLES_RS, "w") as f:
        f.write("\n".join(lines))
    subprocess.run(["rustfmt", "--edition", "2021", TABLES_RS], check=True)
    print(f"  wrote {TABLES_RS}")


# ----------------------------------------------------------------------------- corpus

WORDS = ("time once upon a there was little girl named Lily she liked to play with her"
         " ball in the park one day saw big dog it ran fast and happy because sun shining"
         " tree bird flew sky mom said we can go home now after dinner they ate cake"
         " function return value error struct impl module token section byte merge").split()
ACCENTED = ("café naïve résumé über straße façade jalapeño crème brûlée Ångström São Paulo"
            " Zürich déjà vu coöperate piñata Øresund Łódź İstanbul ĳssel").split()
CJK = ["你好", "世界", "中文", "汉字", "今天天气很好", "我喜欢学习", "東京", "日本語", "한국어", "안녕하세요"]
EMOJI = ["😀", "🎉", "👍🏽", "❤️", "🇫🇷", "👨‍👩‍👧", "🚀", "✨", "🤖", "🙂"]
OTHER_SCRIPTS = ["Привет мир", "Γειά σου", "مرحبا", "שלום", "नमस्ते", "สวัสดี", "ᚠᚢᚦ", "Ωμέγα"]
PUNCT = ["!", "?", "...", "!!", "?!", "--", "—", "(", ")", "[", "]", "{", "}", "\"", "'", ":", ";",
         ",", ".", "->", "=>", "::", "&&", "||", "#", "@", "$", "%", "^", "*", "~", "`", "«", "»", "¿"]
CONTRACTIONS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'Ve", "'M", "'LL", "'D"]
SPACES = [" ", "  ", "   ", "\t", "\t\t", "\n", "\n\n", " \n", "\r\n", " \t ", "\u00a0", "\u3000",
          "\u2003", "\u0085", "\u000b", "\u000c", "\u2028", "    "]


def generated_corpus(rng):
    """Sentences exercising every pre-token class, so that merges cover them."""
    out = []
    for _ in range(4000):
        parts = []
        for _ in range(rng.randint(3, 14)):
            r = rng.random()
            if r < 0.55:
                w = rng.choice(WORDS)
                parts.append(w.capitalize() if rng.random() < 0.2 else w)
            elif r < 0.65:
                parts.append(str(rng.randint(0, 10 ** rng.randint(1, 7))))
            elif r < 0.72:
                parts.append(rng.choice(ACCENTED))
            elif r < 0.78:
                parts.append(rng.choice(CJK))
            elif r < 0.82:
                parts.append(rng.choice(OTHER_SCRIPTS))
            elif r < 0.86:
                parts.append(rng.choice(EMOJI))
            elif r < 0.93:
                parts[-1:] = [(parts[-1] if parts else "it") + rng.choice(CONTRACTIONS)]
            else:
                parts.append(rng.choice(PUNCT))
        out.append(" ".join(parts) + rng.choice([".", "!", "?", "", "\n"]))
    return out


def repository_corpus():
    texts = []
    paths = sorted(glob.glob(os.path.join(ROOT, "tests", "fixtures", "stories", "*.txt")))
    paths.append(os.path.join(ROOT, "tests", "fixtures", "sentences.txt"))
    paths += [os.path.join(ROOT, "src", "tokenizer", name)
              for name in ("mod.rs", "sentencepiece.rs", "stream.rs", "strings.rs")]
    for path in paths:
        with open(path, encoding="utf-8") as f:
            texts.extend(f.read().split("\n\n"))
    return texts


def build_tokenizer(corpus):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=2,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    return tok


# ----------------------------------------------------------------------------- goldens

def random_word(rng, n):
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyzé") for _ in range(n))


def golden_strings(rng, corpus):
    strings = [
        "", " ", "  ", "\t", "\n", "a", "Hello world", "Hello  world", "Hello   world",
        "hello\tworld", "hello\t\tworld", "hello \t world", "line one\nline two\n\nline four",
        "trailing space ", "trailing spaces   ", " leading", "   leading three", "\n\n\nx",
        "it's", "It's", "IT'S", "don't", "DON'T", "we're", "you've", "I'm", "we'll", "he'd",
        "'s", "'", "''", "'''s", "x'sy", "the dog's bone's", "rock'n'roll", "’s curly",
        "12345", "3.14159", "1,000,000", "x = 42;", "2024-05-01T12:00:00Z", " 7 8 9", "٣٤٥",
        "Ⅻ roman", "½ half", "¹²³", "０１２ fullwidth",
        "<|endoftext|>", "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
        "a<|endoftext|>b", "  <|im_end|>  ", "<|im_start|><|im_end|>", "<|im_start", "|im_end|>",
        "<|endoftext|><|endoftext|>", "<<|im_end|>>", "x <|endoftext|>\n\ny",
        "😀😀😀", "👨‍👩‍👧 family", "🇫🇷🇩🇪", "你好，世界！", "café résumé naïve", "Ångström",
        "a" * 300, "ab" * 150, " " * 40 + "x", "\t" * 10 + "y", "!" * 50, "\u00a0x", "x\u00a0",
        "\u3000全角", "\r\n\r\n", "a\u200bb", "\u0085next", "e\u0301 combining", "\ufeffbom",
        "\x00nul\x01", "tab\tat\tend\t", "mixed 123abc456 def", "x²+y²=z²",
    ]
    pieces = (WORDS + ACCENTED + CJK + EMOJI + OTHER_SCRIPTS + PUNCT + CONTRACTIONS + SPACES
              + SPECIALS + ["0", "7", "42", "1999", "3.5", "-1", "1e9", "0x1F", "snake_case",
                            "camelCase", "fn main() {", "}", "    return x;", "//", "#!", "\\n"])
    while len(strings) < GOLDEN_COUNT:
        kind = rng.random()
        if kind < 0.25:
            strings.append(rng.choice(corpus)[: rng.randint(1, 160)])
        elif kind < 0.85:
            n = rng.randint(1, 12)
            s = ""
            for _ in range(n):
                s += rng.choice(pieces)
                if rng.random() < 0.6:
                    s += rng.choice(SPACES[:6] if rng.random() < 0.8 else SPACES)
            strings.append(s)
        elif kind < 0.9:
            strings.append(random_word(rng, rng.randint(20, 120)))
        else:
            # Random scalars, biased to ASCII and to a few interesting blocks.
            s = ""
            for _ in range(rng.randint(1, 20)):
                r = rng.random()
                if r < 0.5:
                    cp = rng.randint(0x20, 0x7E)
                elif r < 0.6:
                    cp = rng.choice([0x09, 0x0A, 0x0D, 0x20, 0xA0, 0x2009, 0x3000])
                else:
                    cp = rng.randint(0x80, 0x10FFFF)
                    if 0xD800 <= cp <= 0xDFFF:
                        cp = 0x4E00
                s += chr(cp)
            strings.append(s)
    return strings


def build_goldens(retrain):
    import tokenizers
    from tokenizers import Tokenizer, pre_tokenizers

    rng = random.Random(20261201)
    corpus = generated_corpus(rng) + repository_corpus()
    json_path = os.path.join(FIXTURE_DIR, "tokenizer.json")
    if retrain or not os.path.exists(json_path):
        tok = build_tokenizer(corpus)
        os.makedirs(FIXTURE_DIR, exist_ok=True)
        tok.save(json_path)
        print(f"  trained {tok.get_vocab_size()} tokens -> {json_path}")
    else:
        tok = Tokenizer.from_file(json_path)
        print(f"  reusing {json_path} ({tok.get_vocab_size()} tokens; --retrain to train anew)")

    gpt2 = Tokenizer.from_file(json_path)
    gpt2.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    plain = Tokenizer.from_file(json_path)
    plain.encode_special_tokens = True

    strings = golden_strings(rng, corpus)
    path = os.path.join(FIXTURE_DIR, "goldens.jsonl")
    with open(path, "w", encoding="utf-8") as f:
        for s in strings:
            ids = tok.encode(s).ids
            line = {"text": s, "ids": ids}
            # The variants only where they differ, to keep the fixture small.
            for key, other in (("plain_ids", plain), ("gpt2_ids", gpt2)):
                other_ids = other.encode(s).ids
                if other_ids != ids:
                    line[key] = other_ids
            decoded = tok.decode(ids, skip_special_tokens=False)
            if decoded != s:
                line["decoded"] = decoded
            f.write(json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n")
    print(f"  {len(strings)} goldens (tokenizers {tokenizers.__version__}) -> {path}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=["tables", "goldens", "all"])
    parser.add_argument("--retrain", action="store_true",
                        help="train tokenizer.json anew instead of reusing the committed one")
    args = parser.parse_args()
    if args.what in ("tables", "all"):
        build_tables()
    if args.what in ("goldens", "all"):
        build_goldens(args.retrain)
    return 0


if __name__ == "__main__":
    sys.exit(main())
