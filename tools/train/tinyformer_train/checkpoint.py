"""The Hugging Face BertForSequenceClassification directory that `tinyformer convert`
reads (config.json, model.safetensors, vocab.txt, tokenizer_config.json), written
either by transformers (`distill.save_student`) or here with numpy: a seeded random
student, used to measure a candidate's exact file and arena size before training, and
by `--no-train` (the smoke test without PyTorch)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

HEAD_DIM = 32  # attention heads = hidden / 32, as in the default model (128 -> 4 heads)


def bert_config(vocab_size: int, hidden: int, layers: int, max_seq: int, labels: list[str],
                heads: int | None = None, ffn: int | None = None, dropout: float = 0.1) -> dict:
    """config.json of the student (also the kwargs of transformers.BertConfig)."""
    id2label = {i: lab for i, lab in enumerate(labels)}
    return {
        "architectures": ["BertForSequenceClassification"], "model_type": "bert",
        "vocab_size": vocab_size, "hidden_size": hidden, "num_hidden_layers": layers,
        "num_attention_heads": heads or max(1, hidden // HEAD_DIM),
        "intermediate_size": ffn or 4 * hidden, "max_position_embeddings": max_seq,
        "type_vocab_size": 2, "hidden_act": "gelu", "hidden_dropout_prob": dropout,
        "attention_probs_dropout_prob": dropout, "initializer_range": 0.02,
        "layer_norm_eps": 1e-12, "pad_token_id": 0, "position_embedding_type": "absolute",
        "num_labels": len(labels), "id2label": id2label,
        "label2id": {lab: i for i, lab in id2label.items()},
        "problem_type": "single_label_classification",
    }


def write_tokenizer_files(out: Path, vocab_text: str, max_seq: int) -> None:
    (out / "vocab.txt").write_text(vocab_text, encoding="utf-8")
    tok_cfg = {"tokenizer_class": "BertTokenizer", "do_lower_case": True, "strip_accents": None,
               "tokenize_chinese_chars": True, "unk_token": "[UNK]", "sep_token": "[SEP]",
               "pad_token": "[PAD]", "cls_token": "[CLS]", "mask_token": "[MASK]",
               "model_max_length": max_seq}
    (out / "tokenizer_config.json").write_text(json.dumps(tok_cfg, indent=2) + "\n")


def write_random_checkpoint(out: Path, config: dict, vocab_text: str, seed: int = 0) -> Path:
    """A checkpoint of `config` with BERT's N(0, 0.02) initialisation (LayerNorm 1/0,
    biases 0). Its int8 file has exactly the size of a trained one of the same shape
    and vocabulary: sizes depend on shapes and vocabulary strings, not on values."""
    rng = np.random.default_rng(seed)
    h, f, v = config["hidden_size"], config["intermediate_size"], config["vocab_size"]

    def normal(*shape):
        return (0.02 * rng.standard_normal(shape)).astype(np.float32)

    def ones(n):
        return np.ones(n, np.float32)

    def zeros(n):
        return np.zeros(n, np.float32)

    t = {"bert.embeddings.word_embeddings.weight": normal(v, h),
         "bert.embeddings.position_embeddings.weight": normal(config["max_position_embeddings"], h),
         "bert.embeddings.token_type_embeddings.weight": normal(config["type_vocab_size"], h),
         "bert.embeddings.LayerNorm.weight": ones(h), "bert.embeddings.LayerNorm.bias": zeros(h)}
    t["bert.embeddings.word_embeddings.weight"][0] = 0.0  # [PAD], as nn.Embedding(padding_idx=0)
    for i in range(config["num_hidden_layers"]):
        p = f"bert.encoder.layer.{i}."
        for name in ("attention.self.query", "attention.self.key", "attention.self.value",
                     "attention.output.dense"):
            t[p + name + ".weight"], t[p + name + ".bias"] = normal(h, h), zeros(h)
        t[p + "intermediate.dense.weight"], t[p + "intermediate.dense.bias"] = normal(f, h), zeros(f)
        t[p + "output.dense.weight"], t[p + "output.dense.bias"] = normal(h, f), zeros(h)
        for ln in ("attention.output.LayerNorm", "output.LayerNorm"):
            t[p + ln + ".weight"], t[p + ln + ".bias"] = ones(h), zeros(h)
    t["bert.pooler.dense.weight"], t["bert.pooler.dense.bias"] = normal(h, h), zeros(h)
    t["classifier.weight"], t["classifier.bias"] = normal(config["num_labels"], h), zeros(config["num_labels"])
    out.mkdir(parents=True, exist_ok=True)
    save_file(t, str(out / "model.safetensors"), metadata={"format": "pt"})
    os.chmod(out / "model.safetensors", 0o644)
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    write_tokenizer_files(out, vocab_text, config["max_position_embeddings"])
    return out
