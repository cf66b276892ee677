"""A GGUF's GPT-2-style byte-level BPE vocabulary as a Hugging Face `tokenizers` tokenizer.

`build_tokenizer(reader)` rebuilds the tokenizer a `gguf.GGUFReader` describes with
`tokenizer.ggml.model = "gpt2"`: a BPE over `tokenizer.ggml.tokens` (ids in file order)
and `tokenizer.ggml.merges` (`"left right"`, rank = position), no normalizer, the
pre-tokenizer `tokenizer.ggml.pre` names (`PRE_TOKENIZERS`; any other is an error),
the `ByteLevel` decoder, and the tokens of type CONTROL and USER_DEFINED as added
special tokens matched in the text (llama.cpp's reading of them; tinyformer's
converter reads them the same way). No BOS is added, whatever
`tokenizer.ggml.add_bos_token` says: callers that need it refuse or add it themselves.

Used by `smollm2_goldens.py` (SmolLM2's goldens), `smollm2_tokenizer_goldens.py` and
`gguf_to_hf_llama.py` (the `tokenizer.json` of a Hugging Face directory written from a
GGUF). Needs `gguf tokenizers`.
"""

import gguf
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

# `tokenizer.ggml.pre` -> whether digits are split one by one before GPT-2's regex
# (SmolLM2: `Sequence([Digits(individual_digits=True), ByteLevel(...)])`).
PRE_TOKENIZERS = {"smollm": True, "gpt-2": False, "gpt2": False, "default": False}

ADDED_TOKEN_TYPES = (gguf.TokenType.CONTROL, gguf.TokenType.USER_DEFINED)


def build_tokenizer(reader):
    """(tokenizer, added token strings) for a GGUF's byte-level BPE vocabulary."""
    field = lambda key: reader.fields[key].contents()  # noqa: E731
    model = field("tokenizer.ggml.model")
    if model != "gpt2":
        raise ValueError(f"tokenizer.ggml.model is {model!r}, not 'gpt2' (byte-level BPE)")
    pre = field("tokenizer.ggml.pre") if "tokenizer.ggml.pre" in reader.fields else "default"
    if pre not in PRE_TOKENIZERS:
        raise ValueError(f"tokenizer.ggml.pre {pre!r} is not one of {sorted(PRE_TOKENIZERS)}")
    tokens = field("tokenizer.ggml.tokens")
    types = field("tokenizer.ggml.token_type")
    merges = [tuple(m.split(" ")) for m in field("tokenizer.ggml.merges")]
    vocab = {piece: i for i, piece in enumerate(tokens)}
    assert len(vocab) == len(tokens), "duplicate pieces"
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if PRE_TOKENIZERS[pre]:
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Digits(individual_digits=True), byte_level]
        )
    else:
        tok.pre_tokenizer = byte_level
    tok.decoder = decoders.ByteLevel()
    added = [tokens[i] for i, t in enumerate(types) if t in ADDED_TOKEN_TYPES]
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in added])
    for s in added:
        assert tok.token_to_id(s) == vocab[s]
    return tok, added
