#!/usr/bin/env python3
"""Goldens for tinyformer's llama2.c tokenizer (`src/tokenizer/sentencepiece.rs`).

The reference is llama2.c itself: this script compiles a small C harness that
`#include`s llama2.c's `run.c` (its `main` renamed with `-Dmain=llama2c_main`), loads
`tok512.bin` with run.c's own `build_tokenizer`, and for every test string calls run.c's
`encode(t, text, bos=1, eos=0, ...)` and `decode(t, prev, id)`. Nothing of the
tokenizer is reimplemented here: Python only makes the strings and writes JSON.

Output: ``tests/fixtures/sentencepiece/stories260K.jsonl``. Line 1 is
``{"provenance": {...}}`` (script, command, sha256 of run.c and of the tokenizer, C
compiler); every other line is one string::

    {"text": "...", "ids": [1, 410, ...], "decoded": ["4f6e6365", ...]}

``text`` is given as ``hex`` instead when the string is not valid UTF-8. ``ids`` is
llama2.c's encoding with BOS; ``decoded[i]`` is the hex of ``decode(ids[i], ids[i+1])``,
the bytes llama2.c prints for token ``i + 1``. ``tests/sentencepiece.rs`` checks
tinyformer against every line.

Regenerate (from the repository root; needs a C compiler and Python 3.8+)::

    git clone https://github.com/karpathy/llama2.c /tmp/llama2.c   # or any copy of run.c
    python3 tools/reference/sp_tokenizer_goldens.py --run-c /tmp/llama2.c/run.c
    cargo test -p tinyformer --test sentencepiece

The committed goldens were made with ``--run-c /work/shared/peers/llama2.c/run.c``
(llama2.c's run.c; its sha256 is recorded in the provenance line). The strings come
from a fixed list plus a seeded generator, so the output is deterministic.
"""

import argparse
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile

HARNESS = r"""
#define main llama2c_main
#include "run.c"
#undef main

static int hex_value(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static void print_hex(const char *s) {
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) printf("%02x", *p);
}

/* argv: tokenizer.bin vocab_size. stdin: one hex-encoded string per line.
   stdout per string: "ids <id> <id> ...\tdecoded <hex>,<hex>,...\n". */
int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: harness tokenizer.bin vocab_size\n"); return 2; }
    Tokenizer tokenizer;
    build_tokenizer(&tokenizer, argv[1], atoi(argv[2]));
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    while ((got = getline(&line, &cap, stdin)) != -1) {
        while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r')) line[--got] = '\0';
        if (got % 2 != 0) { fprintf(stderr, "odd hex line\n"); return 1; }
        size_t len = (size_t)got / 2;
        char *text = malloc(len + 1);
        for (size_t i = 0; i < len; i++) {
            int hi = hex_value(line[2 * i]), lo = hex_value(line[2 * i + 1]);
            if (hi < 0 || lo < 0) { fprintf(stderr, "bad hex\n"); return 1; }
            text[i] = (char)(hi * 16 + lo);
        }
        text[len] = '\0';
        int *tokens = malloc((len + 3) * sizeof(int));
        int n = 0;
        encode(&tokenizer, text, 1, 0, tokens, &n);
        printf("ids");
        for (int i = 0; i < n; i++) printf(" %d", tokens[i]);
        printf("\tdecoded ");
        for (int i = 1; i < n; i++) {
            if (i > 1) printf(",");
            print_hex(decode(&tokenizer, tokens[i - 1], tokens[i]));
        }
        printf("\n");
        free(tokens);
        free(text);
    }
    free(line);
    free_tokenizer(&tokenizer);
    return 0;
}
"""

STORY = [
    "Once upon a time, there was a little girl named Lily.",
    "She loved to play outside in the sunshine.",
    "One day, she saw a big red ball in the park.",
    "Tom and his dog went for a walk.",
    "The cat was very happy and said, \"Thank you!\"",
    "They played together all day long.",
    "Mom said, \"Be careful, it is hot.\"",
    "The bird flew up high into the blue sky.",
    "Ben wanted to help his friend, so he shared his toys.",
    "At the end of the day, they were tired but happy.",
    "Sue found a shiny rock near the river.",
    "The little boy was sad because he lost his teddy bear.",
    "\"Can I have a cookie?\" asked Max.",
    "The sun was shining and the flowers were pretty.",
    "Once upon a time, in a small town, there lived a kind old man.",
    "He liked to fix things and help people.",
    "The dog barked at the mailman.",
    "Lily and Ben went to the store to buy some milk.",
    "The moral of the story is to always be kind.",
    "They hugged and said sorry.",
    "Anna had a pink dress with yellow dots.",
    "The frog jumped into the pond with a big splash!",
    "Tim liked to eat apples, bananas and grapes.",
    "It was a cold and rainy day.",
    "The princess lived in a big castle on a hill.",
    "Every night, Mia looked at the stars.",
    "The car went vroom, vroom down the road.",
    "Sam was scared of the dark, but his mom gave him a lamp.",
    "The bunny hopped to the garden to find a carrot.",
    "They all lived happily ever after.",
    "One day, a little bird fell from its nest.",
    "Lucy wanted to paint a picture of her family.",
    "The bear was hungry, so he looked for honey.",
    "Jack and Jill went up the hill to fetch a pail of water.",
    "The boat sailed across the big, blue sea.",
    "\"Look, Mom! I can fly!\" shouted Timmy.",
    "The old tree had many green leaves.",
    "Zoe gave her friend a big hug.",
    "The train went choo-choo through the tunnel.",
    "Grandma baked a yummy cake for the party.",
    "The kitten was soft and fluffy.",
    "He was very proud of his new bike.",
    "The monster was not scary at all; it was friendly.",
    "Once there was a brave knight who loved his horse.",
    "She said: \"I am sorry, I did not mean it.\"",
    "The sky turned orange and pink at sunset.",
    "Bob's hat blew away in the wind.",
    "The ducks swam in a line across the lake.",
    "Kitty's favorite toy was a little mouse.",
    "They built a big sandcastle at the beach.",
    "The wise owl said, \"Always tell the truth.\"",
    "Tom's mom smiled. \"Good job, Tom!\"",
    "The lion roared, and all the animals ran away.",
    "Emma learned that sharing makes everyone happy.",
    "The snowman had a carrot nose and two coal eyes.",
    "Ellie's balloon floated up, up, up!",
    "The robot beeped and blinked its lights.",
    "Once upon a time there was a happy little worm.",
    "Max ran to the door when he heard the bell.",
    "Lily said, 'Let's go to the park!'",
]

PARAGRAPH = (
    "Once upon a time, there was a little girl named Lily. She loved to play outside in "
    "the park. One day, she saw a big, red ball. She wanted to play with it, but it was "
    "too high in the tree. Lily asked her friend Tom for help. Tom was tall and strong. "
    "He climbed the tree and got the ball. Lily was very happy. \"Thank you, Tom!\" she "
    "said. They played with the ball all day long. When the sun went down, they went "
    "home. Lily's mom gave her a big hug and a warm bowl of soup. It was the best day ever."
)

PUNCTUATION = [
    "Hello, world!", "Wait... what?!", "(a) [b] {c}", "it's", "don't", "A-B_C",
    "50% off", "#1 & @home", "~`^|\\", "a/b\\c", "x = y + z * 2", "semi;colon:",
    "...", "!!!", "???", "--", "\"\"", "''", "<>", "<0x41>", "<0x41", "<s>", "</s>",
    "<unk>", "\n<s>\n", "e.g. i.e. etc.", "Mr. Smith's dog", "5 < 6 > 4",
]

DIGITS = [
    "0", "7", "123", "3.14159", "2024-01-01", "1,000,000", "007", "42 is the answer",
    "He had 3 apples and 12 pears.", "Call 555-1234", "10:30 am", "1st 2nd 3rd 4th",
]

WHITESPACE = [
    "", " ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", "a  b", "a\n\nb", "   leading",
    "trailing   ", "\t\tTabs", " a b c ", "Hello\tWorld", "one\ntwo\nthree",
    "    four spaces", "a \t \n b", "\u00a0non-breaking", "hair\u200aspace",
]

ACCENTED = [
    "café", "naïve", "Über", "façade", "Ångström", "señor", "crème brûlée", "Dvořák",
    "Łódź", "Ça va?", "â€™", "Thatâ€™s", "™", "résumé", "piñata", "Zürich", "Øresund",
    "São Paulo", "Ελληνικά", "Привет, мир!", "Ünïcödé", "ÀÉÎÕÜ àéîõü",
]

EMOJI = [
    "😀", "I like 🍕 and 🍦!", "👍🏽", "👨\u200d👩\u200d👧", "🇫🇷", "❤️", "🐶🐱🐭",
    "The cat 🐱 sat.", "✨magic✨", "🙂 smile", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
]

CJK = [
    "你好", "日本語のテキスト", "한국어", "中文和English混合", "好", "我爱你。",
    "東京", "ひらがな カタカナ", "一二三", "今天天气很好！",
]

OTHER = [
    "שלום", "مرحبا", "नमस्ते", "สวัสดี", "\x7f", "\x01\x02", "\x1b[31mred\x1b[0m",
    "\ufeffBOM", "\u00ad", "\U0010FFFF", "\u0301", "e\u0301",
]

INVALID = [
    b"\xff", b"\x80", b"abc\x80def", b"\xe5\xa5", b"\xc3", b"a\x80\x80\x80\x80\x80",
    b"\xed\xa0\x80", b"\xf0\x9f\x98", b"\xc0\xaf", b"\xe5\xa5\xbd\xe5", b"\xfe\xfe",
    b"Once \xf8\x88\x80\x80\x80 upon", b"\x80\x80\x80\x80\x80\x80\x80\x80\x80",
]


def random_strings(count, seed=20240531):
    rng = random.Random(seed)
    words = [w.strip(".,!?\"'") for s in STORY for w in s.split()]
    pool = (
        [" ", " ", " ", ",", ".", "!", "?", "'", "\"", "-", "\n", "0", "9"]
        + list("éèàüöçñßæø") + list("你好世界中文") + ["😀", "🍕", "🐱", "👍🏽"]
        + list("абвгд") + ["\u200a", "€", "â", "™"]
    )
    out = []
    for _ in range(count):
        parts = []
        for _ in range(rng.randint(1, 12)):
            r = rng.random()
            if r < 0.55:
                word = rng.choice(words)
                parts.append(word.capitalize() if rng.random() < 0.2 else word)
            elif r < 0.8:
                parts.append(rng.choice(pool))
            else:
                parts.append(" ")
        out.append("".join(parts))
    return out


def strings():
    texts = (
        STORY + [PARAGRAPH, PARAGRAPH.upper(), " ".join(STORY[:10])] + PUNCTUATION + DIGITS
        + WHITESPACE + ACCENTED + EMOJI + CJK + OTHER + random_strings(90)
    )
    seen, out = set(), []
    for item in [t.encode("utf-8") for t in texts] + INVALID:
        if item not in seen and b"\0" not in item:
            seen.add(item)
            out.append(item)
    return out


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def main():
    root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run-c", required=True, help="path to llama2.c's run.c")
    parser.add_argument("--tokenizer", default="models/stories260K/tok512.bin")
    parser.add_argument("--vocab-size", type=int, default=512)
    parser.add_argument("--out", default="tests/fixtures/sentencepiece/stories260K.jsonl")
    parser.add_argument("--cc", default=os.environ.get("CC", "cc"))
    args = parser.parse_args()

    run_c = os.path.abspath(args.run_c)
    tokenizer = os.path.join(root, args.tokenizer)
    texts = strings()
    with tempfile.TemporaryDirectory() as tmp:
        harness_c = os.path.join(tmp, "harness.c")
        binary = os.path.join(tmp, "harness")
        with open(harness_c, "w") as f:
            f.write(HARNESS)
        subprocess.run(
            [args.cc, "-O1", "-w", "-I", os.path.dirname(run_c), harness_c, "-o", binary, "-lm"],
            check=True,
        )
        stdin = "".join(t.hex() + "\n" for t in texts)
        result = subprocess.run(
            [binary, tokenizer, str(args.vocab_size)],
            input=stdin.encode(), capture_output=True, check=True,
        )
    lines = result.stdout.decode("ascii").splitlines()
    assert len(lines) == len(texts), (len(lines), len(texts))

    cc_version = subprocess.run([args.cc, "--version"], capture_output=True, text=True)
    provenance = {
        "script": "tools/reference/sp_tokenizer_goldens.py",
        "command": "python3 tools/reference/sp_tokenizer_goldens.py --run-c <llama2.c>/run.c",
        "reference": "llama2.c run.c build_tokenizer/encode(bos=1, eos=0)/decode",
        "run_c_sha256": sha256(run_c),
        "tokenizer": args.tokenizer,
        "tokenizer_sha256": sha256(tokenizer),
        "vocab_size": args.vocab_size,
        "cc": cc_version.stdout.splitlines()[0] if cc_version.stdout else args.cc,
        "strings": len(texts),
    }
    out_path = os.path.join(root, args.out)
    os.makedirs(os.path.dirname(out_path), exist_ok=True)
    with open(out_path, "w", encoding="utf-8") as out:
        out.write(json.dumps({"provenance": provenance}, ensure_ascii=False) + "\n")
        for text, line in zip(texts, lines):
            ids_part, decoded_part = line.split("\t")
            ids = [int(x) for x in ids_part.split()[1:]]
            decoded = decoded_part[len("decoded "):]
            record = {}
            try:
                record["text"] = text.decode("utf-8")
            except UnicodeDecodeError:
                record["hex"] = text.hex()
            record["ids"] = ids
            record["decoded"] = decoded.split(",") if len(ids) > 1 else []
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    print(f"wrote {len(texts)} goldens to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
