"""Writes the GGUF dequantization fixture, tests/fixtures/gguf/, with the reference
`gguf` Python package (llama.cpp's own writer and quantizers):

- types.gguf: a GGUF v3 file (alignment 64) with one tensor per shape and type (F32,
  F16, Q8_0, Q4_0, Q4_1; shapes [2, 64], [3, 32] and [2, 2, 32] in numpy order, so
  GGUF dims [64, 2], [32, 3], [32, 2, 2]) of seeded random values, one all-zero row
  in each [3, 32] tensor (a zero block scale), and metadata of several types
  (string, u32, i32, f32, bool, u64, string array, f32 array, i32 array).
- <tensor name>.f32: the tensor's values from `gguf.quants.dequantize`, raw
  little-endian f32 in storage order; tools/tests/gguf.rs checks the Rust reader
  against them bit for bit.

Regenerate (deterministic, byte for byte, with the same gguf/numpy versions):
    pip install gguf numpy
    python3 tools/reference/gguf_fixture.py
"""

import os

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "gguf")
TYPES = [T.F32, T.F16, T.Q8_0, T.Q4_0, T.Q4_1]
SHAPES = [(2, 64), (3, 32), (2, 2, 32)]


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(20261130)
    w = gguf.GGUFWriter(os.path.join(OUT, "types.gguf"), "tinyformer-test")
    w.add_custom_alignment(64)
    w.add_name("types fixture")
    w.add_uint32("test.u32", 7)
    w.add_int32("test.i32", -3)
    w.add_float32("test.f32", 0.25)
    w.add_bool("test.bool", True)
    w.add_uint64("test.u64", 1 << 40)
    w.add_array("tokenizer.ggml.tokens", ["<unk>", "<s>", "</s>", "\u2581the", "\u00e9t\u00e9", ""])
    w.add_array("tokenizer.ggml.scores", [0.0, -1.5, 2.25, -1000.0, 3.5e-3, 1.0])
    w.add_array("tokenizer.ggml.token_type", [2, 3, 3, 1, 1, 1])
    for qtype in TYPES:
        for shape in SHAPES:
            name = f"{qtype.name.lower()}_{'x'.join(map(str, shape))}"
            # Scales vary by row so blocks differ in magnitude; a constant offset
            # keeps Q4_1's minimum from always being negative.
            x = rng.standard_normal(shape, dtype=np.float32)
            x *= np.float32(0.5) + np.arange(shape[-2], dtype=np.float32).reshape(-1, 1)
            x += np.float32(0.125)
            if shape == (3, 32):
                x[1] = 0
            q = gguf.quants.quantize(x, qtype)
            w.add_tensor(name, q, raw_dtype=qtype)
            values = gguf.quants.dequantize(q, qtype).astype("<f4")
            assert values.shape == shape, (name, values.shape)
            values.tofile(os.path.join(OUT, f"{name}.f32"))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    main()
