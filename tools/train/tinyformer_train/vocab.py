"""The student's own uncased WordPiece vocabulary, trained on the train split only."""

from __future__ import annotations

from pathlib import Path

from tokenizers import BertWordPieceTokenizer

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def train_vocab(texts: list[str], size: int, workdir: Path) -> tuple[Path, list[str]]:
    """Writes workdir/vocab.txt; the result may be smaller than `size` on a small corpus
    (min_frequency 2), so callers use len(vocab), never `size`."""
    wp = BertWordPieceTokenizer(lowercase=True, strip_accents=None, clean_text=True,
                                handle_chinese_chars=True)
    wp.train_from_iterator(texts, vocab_size=size, min_frequency=2,
                           special_tokens=SPECIALS, limit_alphabet=1000,
                           wordpieces_prefix="##", show_progress=False)
    workdir.mkdir(parents=True, exist_ok=True)
    wp.save_model(str(workdir))
    path = workdir / "vocab.txt"
    vocab = path.read_text(encoding="utf-8").split("\n")
    assert vocab[-1] == "", "vocab.txt must end with a newline"
    vocab = vocab[:-1]
    assert vocab[:5] == SPECIALS, vocab[:5]
    assert len(set(vocab)) == len(vocab)
    assert all(t and not any(c.isspace() for c in t) for t in vocab), "whitespace in a vocab entry"
    return path, vocab
