#!/usr/bin/env bash
# Runs the core under Miri (undefined behaviour, out-of-bounds, alignment and overflow
# checks on everything the tests execute, including the zero-copy tensor and arena
# casts inside `bytemuck`): the core's unit tests, the format integration tests, and
# the forward pass on random models from tests/properties.rs, and the decoder's
# float and int8 steps on random tiny decoders (tests/decoder.rs). Usage:
# `bash tools/miri.sh` from anywhere.
#
# The nightly is pinned by date in tools/nightly-toolchain (shared with tools/fuzz.sh)
# and installed, if missing, under that dated name with Miri: the machine's `nightly`
# and default toolchains are neither used nor updated, and Miri's verdicts do not
# change with whatever nightly came out this morning. To move to a newer nightly,
# change the date there (check `rustup toolchain install nightly-YYYY-MM-DD --profile
# minimal --component miri,rust-src` succeeds: Miri is missing from some nightlies).
#
# The `unsafe` in src/ is in the SIMD kernels (src/kernels/matvec/*.rs), which CPU
# feature detection keeps out of reach under Miri (it reports no AVX2 or AVX-VNNI), so
# Miri checks the scalar reference; those kernels are compared bit for bit with it
# natively and under QEMU. The other unsafe code that runs is in dependencies
# (bytemuck casts, crc, half) and the standard library.
#
# `libm/force-soft-floats`: libm's default x86 `sqrtf` is inline assembly, which Miri
# cannot run. Slow tests are reduced under `cfg(miri)`; the two exhaustive format
# corruption tests are ignored there (see their attributes).
set -euo pipefail
cd "$(dirname "$0")/.."

nightly=$(<tools/nightly-toolchain)
# `component add` as well: tools/fuzz.sh may have installed the toolchain without Miri.
if ! cargo "+$nightly" miri --version >/dev/null 2>&1 &&
  ! { rustup toolchain install "$nightly" --profile minimal &&
    rustup component add --toolchain "$nightly" miri rust-src; }; then
  # Miri exists only on nightly; a machine that cannot fetch a toolchain cannot run it.
  echo "Miri SKIPPED: $nightly with miri could not be installed here" >&2
  exit 0
fi
cargo "+$nightly" miri setup

features=alloc,libm/force-soft-floats
cargo "+$nightly" miri test --features "$features" --lib
cargo "+$nightly" miri test --features "$features" --test format
cargo "+$nightly" miri test --features "$features" --test decoder
cargo "+$nightly" miri test --features "$features" --test properties -- \
  writer_output_is_accepted_and_runs header_and_directory_corruption_is_refused
