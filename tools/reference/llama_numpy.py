"""Float reference of the Llama forward pass for GGUF files, in numpy.

Reads a GGUF of architecture `llama` with the `gguf` package (`gguf.GGUFReader`) and
dequantizes every tensor with `gguf.quants.dequantize` (F32, F16, Q8_0, Q4_0, Q4_1, ...:
whatever the package knows) to float64 (default) or float32 (`--dtype float32`). All
arithmetic is then done in that dtype; the quantized weights are therefore the model,
and the only rounding on top of them is the dtype's.

The forward pass is the one llama.cpp runs for `llama` (decoder-only, pre-norm):

    h = token_embd[ids]
    for each block:
        x = rmsnorm(h) * attn_norm                      # eps: llama.attention.layer_norm_rms_epsilon
        q, k, v = x @ attn_q.T, x @ attn_k.T, x @ attn_v.T
        q, k = rope(q, pos), rope(k, pos)              # adjacent pairs, see below
        h += attention(q, k, v) @ attn_output.T        # GQA, causal, scale 1/sqrt(head_dim)
        x = rmsnorm(h) * ffn_norm
        h += (silu(x @ ffn_gate.T) * (x @ ffn_up.T)) @ ffn_down.T
    logits = (rmsnorm(h) * output_norm) @ output.T     # output.weight, else token_embd (tied)

Conventions:

* Dims order. GGUF lists a tensor's dims innermost first (`ne[0]` is the length of a
  row), so a matrix with GGUF shape `[in, out]` is `out` rows of `in` values. After
  `gguf.quants.dequantize` it is a numpy array of shape `(out, in)` (checked on load:
  the dequantized shape is the GGUF shape reversed), and `y = x @ W.T`.
* RoPE over ADJACENT pairs: llama.cpp's "norm" rope mode, used for `llama`. The
  converters (llama.cpp's `convert_hf_to_gguf.py` permutes Hugging Face's half-split
  q/k rows) store q and k rows so that dims `(2i, 2i+1)` of each head form a pair,
  rotated by `pos * freq_base ** (-2i / n_rot)`, `freq_base` = `llama.rope.freq_base`
  (10000 when absent), `n_rot` = `llama.rope.dimension_count` (the head dim when
  absent; dims past `n_rot` are not rotated). llama2.c uses the same order.
* Grouped-query attention: query head `h` reads key/value head `h // (n_head / n_kv)`.
* A KV cache (`Cache`) makes decoding one token cost one token's work; `forward`
  takes any number of new tokens at once (a prompt) after what the cache holds.

Not handled (raised as errors where detectable): rope scaling, biases, MoE, other
architectures.

Command line (from the repository root; `pip install gguf numpy`): greedy decoding from
given ids, printing the ids and the text decoded with the GGUF's vocabulary. The
validation against llama2.c's published greedy output of stories260K (empty prompt,
BOS id 1 only, 200 tokens) is

    python3 tools/reference/llama_numpy.py tests/fixtures/gguf/stories260K-f32.gguf \
        --ids 1 --steps 200 --expect models/stories260K/greedy-200.txt

which exits non-zero unless the decoded text equals the file (llama2.c's decoding:
`U+2581` pieces are spaces, `<0xNN>` pieces are bytes, the space after BOS is
stripped, generation stops at BOS).
"""

import argparse
import sys
import time

import gguf
import numpy as np


def _field(reader, key, default=None):
    f = reader.fields.get(key)
    if f is None:
        return default
    return f.contents()


class LlamaGGUF:
    """Hyperparameters, dequantized weights and vocabulary of a `llama` GGUF."""

    def __init__(self, path, dtype=np.float64):
        self.path = str(path)
        self.dtype = np.dtype(dtype)
        r = gguf.GGUFReader(self.path)
        arch = _field(r, "general.architecture")
        if arch != "llama":
            raise ValueError(f"architecture {arch!r}, expected 'llama'")
        if _field(r, "llama.rope.scaling.type", "none") not in ("none", None):
            raise ValueError("rope scaling is not implemented")
        self.n_layer = int(_field(r, "llama.block_count"))
        self.n_embd = int(_field(r, "llama.embedding_length"))
        self.n_ff = int(_field(r, "llama.feed_forward_length"))
        self.n_head = int(_field(r, "llama.attention.head_count"))
        self.n_kv = int(_field(r, "llama.attention.head_count_kv", self.n_head))
        self.head_dim = int(_field(r, "llama.attention.key_length", self.n_embd // self.n_head))
        self.n_rot = int(_field(r, "llama.rope.dimension_count", self.head_dim))
        self.rope_base = float(_field(r, "llama.rope.freq_base", 10000.0))
        self.eps = float(_field(r, "llama.attention.layer_norm_rms_epsilon"))
        self.n_ctx_train = int(_field(r, "llama.context_length", 0))
        self.tokens = list(_field(r, "tokenizer.ggml.tokens", []))
        self.token_types = list(_field(r, "tokenizer.ggml.token_type", []))
        self.tokenizer_model = _field(r, "tokenizer.ggml.model")
        self.bos = _field(r, "tokenizer.ggml.bos_token_id")
        self.eos = _field(r, "tokenizer.ggml.eos_token_id")
        self.reader = r

        self.tensor_types = {}
        w = {}
        for t in r.tensors:
            a = gguf.quants.dequantize(t.data, t.tensor_type)
            ggml_shape = tuple(int(n) for n in t.shape)
            if a.shape != ggml_shape[::-1]:
                raise ValueError(f"{t.name}: dequantized {a.shape}, GGUF dims {ggml_shape}")
            w[t.name] = np.ascontiguousarray(a, dtype=self.dtype)
            self.tensor_types[t.name] = t.tensor_type.name
        if any(name.endswith(".bias") for name in w):
            raise ValueError("biases are not implemented")
        self.tied = "output.weight" not in w
        self.vocab_size = w["token_embd.weight"].shape[0]
        self.w = w
        hd = self.head_dim
        expect = {
            "attn_q.weight": (self.n_head * hd, self.n_embd),
            "attn_k.weight": (self.n_kv * hd, self.n_embd),
            "attn_v.weight": (self.n_kv * hd, self.n_embd),
            "attn_output.weight": (self.n_embd, self.n_head * hd),
            "ffn_gate.weight": (self.n_ff, self.n_embd),
            "ffn_up.weight": (self.n_ff, self.n_embd),
            "ffn_down.weight": (self.n_embd, self.n_ff),
        }
        for i in range(self.n_layer):
            for name, shape in expect.items():
                got = w[f"blk.{i}.{name}"].shape
                if got != shape:
                    raise ValueError(f"blk.{i}.{name}: shape {got}, expected {shape}")
        # RoPE inverse frequencies of the pairs (2i, 2i+1), i < n_rot / 2.
        i = np.arange(self.n_rot // 2, dtype=np.float64)
        self.inv_freq = self.rope_base ** (-2.0 * i / self.n_rot)

    def hparams(self):
        """The hyperparameters read from the file, as a JSON-ready dict."""
        return {
            "architecture": "llama",
            "block_count": self.n_layer,
            "embedding_length": self.n_embd,
            "feed_forward_length": self.n_ff,
            "head_count": self.n_head,
            "head_count_kv": self.n_kv,
            "head_dim": self.head_dim,
            "rope_dimension_count": self.n_rot,
            "rope_freq_base": self.rope_base,
            "layer_norm_rms_epsilon": self.eps,
            "context_length": self.n_ctx_train,
            "vocab_size": self.vocab_size,
            "tied_embeddings": self.tied,
            "tokenizer_model": self.tokenizer_model,
            "bos_token_id": self.bos,
            "eos_token_id": self.eos,
        }

    # ---- forward pass -------------------------------------------------------

    def rmsnorm(self, x, weight):
        ms = np.mean(x * x, axis=-1, keepdims=True)
        return x / np.sqrt(ms + self.eps) * weight

    def rope(self, x, positions):
        """x: (T, heads, head_dim); rotates the adjacent pairs of the first n_rot dims."""
        ang = positions.astype(np.float64)[:, None] * self.inv_freq[None, :]  # (T, n_rot/2)
        cos = np.cos(ang).astype(self.dtype)[:, None, :]
        sin = np.sin(ang).astype(self.dtype)[:, None, :]
        out = x.copy()
        x0 = x[..., 0 : self.n_rot : 2]
        x1 = x[..., 1 : self.n_rot : 2]
        out[..., 0 : self.n_rot : 2] = x0 * cos - x1 * sin
        out[..., 1 : self.n_rot : 2] = x0 * sin + x1 * cos
        return out

    def new_cache(self):
        return Cache(self)

    def forward(self, ids, cache):
        """Runs the new tokens `ids` after the `cache.length` tokens the cache holds;
        appends their keys/values to the cache and returns their logits, (T, vocab)."""
        ids = np.asarray(ids, dtype=np.int64)
        T = len(ids)
        start = cache.length
        positions = np.arange(start, start + T)
        S = start + T
        hd, H, KV = self.head_dim, self.n_head, self.n_kv
        group = H // KV
        scale = 1.0 / np.sqrt(hd)
        # causal mask: query at position start+t sees keys at positions <= start+t
        mask = np.arange(S)[None, :] > positions[:, None]  # (T, S)
        w = self.w
        h = w["token_embd.weight"][ids]
        for layer in range(self.n_layer):
            p = f"blk.{layer}."
            x = self.rmsnorm(h, w[p + "attn_norm.weight"])
            q = (x @ w[p + "attn_q.weight"].T).reshape(T, H, hd)
            k = (x @ w[p + "attn_k.weight"].T).reshape(T, KV, hd)
            v = (x @ w[p + "attn_v.weight"].T).reshape(T, KV, hd)
            q = self.rope(q, positions)
            k = self.rope(k, positions)
            K, V = cache.append(layer, k, v)  # (S, KV, hd)
            qg = q.reshape(T, KV, group, hd)
            scores = np.einsum("tkgd,skd->kgts", qg, K) * scale  # (KV, group, T, S)
            scores = np.where(mask, -np.inf, scores)
            scores -= scores.max(axis=-1, keepdims=True)
            probs = np.exp(scores)
            probs /= probs.sum(axis=-1, keepdims=True)
            o = np.einsum("kgts,skd->tkgd", probs, V).reshape(T, H * hd)
            h = h + o @ w[p + "attn_output.weight"].T
            x = self.rmsnorm(h, w[p + "ffn_norm.weight"])
            g = x @ w[p + "ffn_gate.weight"].T
            u = x @ w[p + "ffn_up.weight"].T
            h = h + ((g / (1.0 + np.exp(-g))) * u) @ w[p + "ffn_down.weight"].T
        cache.length = S
        x = self.rmsnorm(h, w["output_norm.weight"])
        out = w["token_embd.weight"] if self.tied else w["output.weight"]
        return x @ out.T

    def greedy(self, ids, steps, stop=None):
        """Greedy continuation: returns (new ids, top-2 logit margin per step, logits of
        the prompt's last position). Stops early after emitting a token in `stop`."""
        cache = self.new_cache()
        logits = self.forward(ids, cache)[-1]
        first = logits
        out, margins = [], []
        for _ in range(steps):
            top2 = np.argpartition(-logits, 1)[:2]
            top2 = top2[np.argsort(-logits[top2], kind="stable")]
            nxt = int(np.argmax(logits))  # first index of the maximum (ties: lowest id)
            out.append(nxt)
            margins.append(float(logits[top2[0]] - logits[top2[1]]))
            if stop is not None and nxt in stop:
                break
            logits = self.forward([nxt], cache)[-1]
        return out, margins, first

    # ---- decoding of ids to text (for the command line) ----------------------

    def decode_llama2c(self, ids, prev=None):
        """SentencePiece vocabulary decoded as llama2.c's `run.c` does."""
        out = bytearray()
        for tid in ids:
            piece = self.tokens[tid]
            if prev == self.bos and piece.startswith("\u2581"):
                piece = piece[1:]
            if len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
                out += bytes([int(piece[3:5], 16)])
            else:
                out += piece.replace("\u2581", " ").encode("utf-8")
            prev = tid
        return out.decode("utf-8", errors="replace")

    def decode_byte_level(self, ids):
        """GPT-2 byte-level vocabulary: each character of a piece stands for a byte."""
        inverse = {c: b for b, c in _bytes_to_unicode().items()}
        out = bytearray()
        for tid in ids:
            piece = self.tokens[tid]
            if self.token_types and self.token_types[tid] == gguf.TokenType.CONTROL:
                out += piece.encode("utf-8")
            else:
                out += bytes(inverse[c] for c in piece)
        return out.decode("utf-8", errors="replace")

    def decode(self, ids, prev=None):
        if self.tokenizer_model == "gpt2":
            return self.decode_byte_level(ids)
        return self.decode_llama2c(ids, prev)


def _bytes_to_unicode():
    """GPT-2's byte -> printable character table (printable Latin-1 bytes map to
    themselves, the other bytes to U+0100 onwards in byte order)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


class Cache:
    """Keys (after RoPE) and values of the tokens seen so far, per layer: (S, n_kv, head_dim)."""

    def __init__(self, model):
        self.length = 0
        self.k = [None] * model.n_layer
        self.v = [None] * model.n_layer

    def append(self, layer, k, v):
        if self.k[layer] is None:
            self.k[layer], self.v[layer] = k, v
        else:
            self.k[layer] = np.concatenate([self.k[layer], k])
            self.v[layer] = np.concatenate([self.v[layer], v])
        return self.k[layer], self.v[layer]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("gguf")
    parser.add_argument("--ids", type=int, nargs="+", required=True, help="prompt token ids")
    parser.add_argument("--steps", type=int, default=32, help="tokens to generate")
    parser.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    parser.add_argument("--expect", help="file the decoded text must equal (exit 1 otherwise)")
    args = parser.parse_args()

    t0 = time.time()
    model = LlamaGGUF(args.gguf, dtype=np.dtype(args.dtype))
    t1 = time.time()
    # llama2.c stops when the model emits BOS; stop at EOS too
    stop = {x for x in (model.bos, model.eos) if x is not None}
    ids, margins, _ = model.greedy(args.ids, args.steps, stop=stop)
    if ids and ids[-1] == model.bos:
        ids = ids[:-1]
    t2 = time.time()
    text = model.decode(ids, prev=args.ids[-1])
    print("ids:", " ".join(map(str, ids)))
    print(f"min top-2 margin: {min(margins):.6g}")
    print(f"load {t1 - t0:.1f} s, generate {len(ids)} tokens {t2 - t1:.1f} s", file=sys.stderr)
    print(text)
    if args.expect:
        with open(args.expect, encoding="utf-8") as f:
            want = f.read().rstrip("\n")
        if text.rstrip("\n") != want:
            sys.exit(f"MISMATCH against {args.expect}")
        print(f"OK: identical to {args.expect}", file=sys.stderr)


if __name__ == "__main__":
    main()
