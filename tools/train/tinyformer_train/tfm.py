"""Calls to the `tinyformer` CLI: the converter, evaluator and memory planner that the
device runtime shares, so every size and accuracy reported is the real one."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from . import TrainError

REPO = Path(__file__).resolve().parents[3]


def find_tinyformer(explicit: str | None) -> str:
    """--tinyformer, else $TINYFORMER, else this repository's target/release/tinyformer,
    else `tinyformer` on PATH."""
    for cand in (explicit, os.environ.get("TINYFORMER"), REPO / "target" / "release" / "tinyformer"):
        if cand and Path(cand).is_file() and os.access(cand, os.X_OK):
            return str(cand)
        if cand and cand == explicit:
            raise TrainError(f"--tinyformer {explicit}: not an executable file")
    found = shutil.which("tinyformer")
    if found:
        return found
    raise TrainError("no tinyformer binary: build it with `cargo build --release -p tinyformer-cli` "
                     "(or `cargo install --path tools`), or pass --tinyformer PATH")


def run(tf: str, *args: str) -> str:
    cmd = [tf, *map(str, args)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise TrainError(f"`{' '.join(cmd)}` failed (exit {p.returncode}):\n{p.stderr.strip()}")
    return p.stdout


def convert(tf: str, ckpt: Path, out: Path, dtype: str, max_seq: int,
            calibration: Path | None = None) -> Path:
    args = ["convert", ckpt, "-o", out, "--dtype", dtype, "--max-seq", str(max_seq)]
    if calibration is not None:
        args += ["--calibration", calibration]
    run(tf, *args)
    return out


def inspect(tf: str, model: Path, seq: int) -> dict:
    return json.loads(run(tf, "inspect", model, "--seq", str(seq), "--json"))


def evaluate(tf: str, model: Path, data: Path, compare: Path | None = None, windows: int = 1) -> dict:
    args = ["eval", "-m", model, "--data", data, "--json", "--windows", str(windows)]
    if compare is not None:
        args += ["--compare", compare]
    return json.loads(run(tf, *args))

