"""Float64 numpy reference of the Hugging Face BERT forward pass.

This is the float reference that tinyformer's golden test data is generated
from (see ``golden.py``). It mirrors ``transformers.BertModel`` /
``transformers.BertForSequenceClassification`` in inference mode (dropout off):

    embeddings  = LayerNorm(word[ids] + position[0..n] + token_type[types])
    for each layer (post-LN):
        a       = MultiHeadSelfAttention(x, padding mask)
        x       = LayerNorm(x + Dense_o(a))
        f       = Dense_out(act(Dense_in(x)))        act: gelu | gelu_new | relu
        x       = LayerNorm(x + f)
    last_hidden = x                                   [seq, hidden]
    pooler      = tanh(Dense_p(last_hidden[0]))       ([CLS] token)
    logits      = Dense_c(pooler)                     (sequence classification)
    mean        = sum(mask * last_hidden) / sum(mask) (sentence-transformers)

Everything is computed in float64, whatever the checkpoint's dtype, so the
reference is more accurate than a float32 PyTorch run.

Checkpoint directory layout (Hugging Face):
    config.json         hidden_size, num_hidden_layers, num_attention_heads,
                        intermediate_size, hidden_act, layer_norm_eps, ...
    model.safetensors   read with ``safetensors.numpy``. Tensor names may carry
                        the ``bert.`` prefix (BertForSequenceClassification) or
                        not (BertModel, e.g. all-MiniLM-L6-v2). The int64
                        ``embeddings.position_ids`` buffer is ignored.

Usage as a library:

    from bert_numpy import BertNumpy, mean_pool
    model = BertNumpy.from_pretrained("tests/fixtures/tiny-bert-cls")
    out = model.forward([2, 1034, 1101, 3])    # one unpadded sequence
    out["last_hidden"], out["pooled"], out["logits"]

Needs only numpy and safetensors (``pip install numpy safetensors``).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass

import numpy as np
from safetensors.numpy import load_file

__all__ = ["BertConfig", "BertNumpy", "mean_pool", "gelu_erf", "gelu_tanh"]

_ERF = np.frompyfunc(math.erf, 1, 1)


def gelu_erf(x: np.ndarray) -> np.ndarray:
    """Exact GELU, ``x * 0.5 * (1 + erf(x / sqrt(2)))`` (HF ``gelu``).

    numpy has no vectorised erf, so this maps ``math.erf`` (libm, double
    precision) over the array: slow-ish but accurate, which is what a
    reference is for.
    """
    x = np.asarray(x, dtype=np.float64)
    return x * 0.5 * (1.0 + _ERF(x / math.sqrt(2.0)).astype(np.float64))


def gelu_tanh(x: np.ndarray) -> np.ndarray:
    """Tanh approximation of GELU (HF ``gelu_new`` / ``gelu_pytorch_tanh``)."""
    x = np.asarray(x, dtype=np.float64)
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0)


ACTIVATIONS = {
    "gelu": gelu_erf,
    "gelu_new": gelu_tanh,
    "gelu_pytorch_tanh": gelu_tanh,
    "relu": relu,
}


@dataclass
class BertConfig:
    """The config.json fields the forward pass depends on."""

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    hidden_act: str = "gelu"
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    position_embedding_type: str = "absolute"
    architectures: tuple = ()
    id2label: dict | None = None

    @classmethod
    def from_json(cls, path: str) -> "BertConfig":
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
        if raw.get("model_type", "bert") != "bert":
            raise ValueError(f"{path}: model_type {raw.get('model_type')!r} is not 'bert'")
        cfg = cls(
            vocab_size=int(raw["vocab_size"]),
            hidden_size=int(raw["hidden_size"]),
            num_hidden_layers=int(raw["num_hidden_layers"]),
            num_attention_heads=int(raw["num_attention_heads"]),
            intermediate_size=int(raw["intermediate_size"]),
            hidden_act=raw.get("hidden_act", "gelu"),
            max_position_embeddings=int(raw.get("max_position_embeddings", 512)),
            type_vocab_size=int(raw.get("type_vocab_size", 2)),
            layer_norm_eps=float(raw.get("layer_norm_eps", 1e-12)),
            position_embedding_type=raw.get("position_embedding_type", "absolute"),
            architectures=tuple(raw.get("architectures") or ()),
            id2label=raw.get("id2label"),
        )
        if cfg.hidden_act not in ACTIVATIONS:
            raise ValueError(f"{path}: unsupported hidden_act {cfg.hidden_act!r}")
        if cfg.position_embedding_type != "absolute":
            raise ValueError(f"{path}: only absolute position embeddings are supported")
        if cfg.hidden_size % cfg.num_attention_heads:
            raise ValueError(f"{path}: hidden_size not divisible by num_attention_heads")
        return cfg

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads


def layer_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float) -> np.ndarray:
    """LayerNorm over the last axis, biased variance (as torch.nn.LayerNorm)."""
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * gamma + beta


def dense(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """torch.nn.Linear: weight is [out, in], ``y = x @ W^T + b``."""
    y = x @ weight.T
    return y if bias is None else y + bias


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    m = x.max(axis=axis, keepdims=True)
    e = np.exp(x - m)
    return e / e.sum(axis=axis, keepdims=True)


def mean_pool(last_hidden: np.ndarray, attention_mask: np.ndarray | None = None) -> np.ndarray:
    """sentence-transformers mean pooling: average of the unmasked tokens.

    last_hidden: [seq, hidden] or [batch, seq, hidden]; attention_mask the
    matching [seq] / [batch, seq] of 0/1 (all ones when None).
    """
    if attention_mask is None:
        attention_mask = np.ones(last_hidden.shape[:-1])
    m = np.asarray(attention_mask, dtype=np.float64)[..., None]
    return (last_hidden * m).sum(axis=-2) / np.maximum(m.sum(axis=-2), 1e-9)


class BertNumpy:
    """BERT encoder + optional pooler + optional sequence-classification head."""

    def __init__(self, config: BertConfig, tensors: dict[str, np.ndarray]):
        self.config = config
        w: dict[str, np.ndarray] = {}
        for name, t in tensors.items():
            if name.endswith("position_ids"):
                continue  # int64 buffer [1, max_pos] in some checkpoints (MiniLM)
            key = name[len("bert."):] if name.startswith("bert.") else name
            w[key] = np.asarray(t, dtype=np.float64)
        self.w = w
        self.act = ACTIVATIONS[config.hidden_act]
        self.has_pooler = "pooler.dense.weight" in w
        self.has_classifier = "classifier.weight" in w
        self._check_shapes()

    @classmethod
    def from_pretrained(cls, checkpoint_dir: str) -> "BertNumpy":
        config = BertConfig.from_json(os.path.join(checkpoint_dir, "config.json"))
        tensors = load_file(os.path.join(checkpoint_dir, "model.safetensors"))
        return cls(config, tensors)

    def _check_shapes(self) -> None:
        c, h, ffn = self.config, self.config.hidden_size, self.config.intermediate_size
        want = {
            "embeddings.word_embeddings.weight": (c.vocab_size, h),
            "embeddings.position_embeddings.weight": (c.max_position_embeddings, h),
            "embeddings.token_type_embeddings.weight": (c.type_vocab_size, h),
            "embeddings.LayerNorm.weight": (h,),
            "embeddings.LayerNorm.bias": (h,),
        }
        for i in range(c.num_hidden_layers):
            p = f"encoder.layer.{i}."
            for m in ("attention.self.query", "attention.self.key", "attention.self.value",
                      "attention.output.dense"):
                want[p + m + ".weight"] = (h, h)
                want[p + m + ".bias"] = (h,)
            want[p + "intermediate.dense.weight"] = (ffn, h)
            want[p + "intermediate.dense.bias"] = (ffn,)
            want[p + "output.dense.weight"] = (h, ffn)
            want[p + "output.dense.bias"] = (h,)
            for ln in ("attention.output.LayerNorm", "output.LayerNorm"):
                want[p + ln + ".weight"] = (h,)
                want[p + ln + ".bias"] = (h,)
        if self.has_pooler:
            want["pooler.dense.weight"] = (h, h)
            want["pooler.dense.bias"] = (h,)
        for name, shape in want.items():
            if name not in self.w:
                raise KeyError(f"missing tensor {name!r} (with or without 'bert.' prefix)")
            if self.w[name].shape != shape:
                raise ValueError(f"{name}: shape {self.w[name].shape}, expected {shape}")
        if self.has_classifier:
            n = self.w["classifier.weight"].shape[0]
            if self.w["classifier.weight"].shape != (n, h) or self.w["classifier.bias"].shape != (n,):
                raise ValueError("classifier weight/bias shapes do not match")

    # -- forward pass ----------------------------------------------------------

    def embeddings(self, ids: np.ndarray, token_type_ids: np.ndarray) -> np.ndarray:
        w, seq = self.w, ids.shape[-1]
        if seq > self.config.max_position_embeddings:
            raise ValueError(f"sequence of {seq} tokens > max_position_embeddings")
        x = (w["embeddings.word_embeddings.weight"][ids]
             + w["embeddings.position_embeddings.weight"][:seq]
             + w["embeddings.token_type_embeddings.weight"][token_type_ids])
        return layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"],
                          self.config.layer_norm_eps)

    def attention(self, i: int, x: np.ndarray, mask_bias: np.ndarray, probs_out=None) -> np.ndarray:
        """Multi-head self-attention of layer i, before the output dense.

        x: [batch, seq, hidden]; mask_bias: [batch, 1, 1, seq], 0 for real
        tokens and a huge negative number for padding (as HF's extended mask).
        """
        c, w, p = self.config, self.w, f"encoder.layer.{i}.attention.self."
        b, s, _ = x.shape
        heads, hd = c.num_attention_heads, c.head_dim

        def split(t):  # [b, s, hidden] -> [b, heads, s, head_dim]
            return t.reshape(b, s, heads, hd).transpose(0, 2, 1, 3)

        q = split(dense(x, w[p + "query.weight"], w[p + "query.bias"]))
        k = split(dense(x, w[p + "key.weight"], w[p + "key.bias"]))
        v = split(dense(x, w[p + "value.weight"], w[p + "value.bias"]))
        scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(hd) + mask_bias
        probs = softmax(scores, axis=-1)                   # [b, heads, s, s]
        if probs_out is not None:
            probs_out.append(probs)
        ctx = probs @ v                                    # [b, heads, s, head_dim]
        return ctx.transpose(0, 2, 1, 3).reshape(b, s, heads * hd)

    def layer(self, i: int, x: np.ndarray, mask_bias: np.ndarray, probs_out=None) -> np.ndarray:
        c, w, p = self.config, self.w, f"encoder.layer.{i}."
        eps = c.layer_norm_eps
        a = self.attention(i, x, mask_bias, probs_out)
        a = dense(a, w[p + "attention.output.dense.weight"], w[p + "attention.output.dense.bias"])
        x = layer_norm(x + a, w[p + "attention.output.LayerNorm.weight"],
                       w[p + "attention.output.LayerNorm.bias"], eps)
        f = self.act(dense(x, w[p + "intermediate.dense.weight"], w[p + "intermediate.dense.bias"]))
        f = dense(f, w[p + "output.dense.weight"], w[p + "output.dense.bias"])
        return layer_norm(x + f, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], eps)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None,
                return_attentions: bool = False) -> dict:
        """Run the model.

        input_ids: [seq] or [batch, seq] ints. attention_mask: same shape, 1 for
        real tokens, 0 for padding (default all ones). token_type_ids: same
        shape (default all zeros).

        Returns a dict of float64 arrays (batch axis dropped for 1-D input):
          last_hidden [.., seq, hidden]; pooled: tanh pooler on [CLS] or None
          when the checkpoint has no pooler; logits [.., num_labels] or None;
          mean: masked mean of last_hidden; attentions (only when
          return_attentions): list per layer of [.., heads, seq, seq] probs.
        """
        ids = np.asarray(input_ids, dtype=np.int64)
        single = ids.ndim == 1
        if single:
            ids = ids[None, :]
        mask = (np.ones_like(ids) if attention_mask is None
                else np.asarray(attention_mask, dtype=np.int64).reshape(ids.shape))
        types = (np.zeros_like(ids) if token_type_ids is None
                 else np.asarray(token_type_ids, dtype=np.int64).reshape(ids.shape))
        if ids.min() < 0 or ids.max() >= self.config.vocab_size:
            raise ValueError("token id out of range")

        # HF: extended_attention_mask = (1 - mask) * finfo(dtype).min
        mask_bias = ((1.0 - mask) * np.finfo(np.float64).min)[:, None, None, :]

        x = self.embeddings(ids, types)
        probs = [] if return_attentions else None
        for i in range(self.config.num_hidden_layers):
            x = self.layer(i, x, mask_bias, probs)

        pooled = logits = None
        if self.has_pooler:
            pooled = np.tanh(dense(x[:, 0], self.w["pooler.dense.weight"], self.w["pooler.dense.bias"]))
            if self.has_classifier:
                logits = dense(pooled, self.w["classifier.weight"], self.w["classifier.bias"])
        out = {"last_hidden": x, "pooled": pooled, "logits": logits, "mean": mean_pool(x, mask)}
        if single:
            out = {k: (None if v is None else v[0]) for k, v in out.items()}
        if return_attentions:
            out["attentions"] = [p[0] for p in probs] if single else probs
        return out

    __call__ = forward
