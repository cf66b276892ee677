#!/usr/bin/env bash
# Builds the int8 inference path for Cortex-M0+ (thumbv6m-none-eabi, no FPU) and fails
# if any soft-float routine (__aeabi_f*, __aeabi_d*, or the generic __*sf*/__*df*
# helpers) is linked: the int8 forward pass must execute no floating-point operation.
# Needs: rustup target add thumbv6m-none-eabi; rustup component add llvm-tools.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin_dir="$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin"
cd "$here/examples/nofloat-m0"
cargo build --release --quiet
elf=target/thumbv6m-none-eabi/release/tinyformer-nofloat-m0
symbols=$("$bin_dir/llvm-nm" "$elf")
float=$(grep -E ' (__aeabi_[fd]|__(add|sub|mul|div|neg|cmp|eq|ne|lt|le|gt|ge|unord|fix|float|extend|trunc)[a-z]*[sd]f[0-9a-z]*)' <<<"$symbols" || true)
if [ -n "$float" ]; then
  echo "FAIL: soft-float routines linked into the int8 path:"
  echo "$float"
  exit 1
fi
echo "int8 path for thumbv6m-none-eabi: no soft-float symbol linked ($(grep -c ' [tT] ' <<<"$symbols") functions)"
"$bin_dir/llvm-size" "$elf"
