#!/usr/bin/env bash
# The Cortex-M DSP int8 kernels on an emulated Cortex-M4F (QEMU mps2-an386):
#  1. builds examples/kernel-check-m4 and runs it: it compares the DSP kernels with the
#     scalar reference on every vector length 0..=300, on matrices of 0..=9 rows, and
#     on products of 0..=9 tokens (the tiled multi-token kernel: tiles of 4, 3, 2 and
#     1 tokens, row groups and column chunks with their leftovers; row-strided
#     operands, as the attention scores' heads) (random and -128/127 extremes), the
#     epilogues and LayerNorm whose loops are assembly on this core (the FFN
#     activation, the residual projections, keys/values, queries, contexts: every
#     requantization kind, extremes, capped shifts) against their definitions, and
#     exits non-zero on the first mismatch;
#  2. counts the instructions of one 128x384 matrix-vector product with each kernel,
#     and of the DSP kernel's product of that matrix with 8 tokens (QEMU TCG plugin
#     tools/qemu/insncount.c), and prints instructions per MAC.
# Needs: qemu-system-arm, gcc, rustup target thumbv7em-none-eabihf, llvm-tools.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin_dir="$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

gcc -O2 -Wall -shared -fPIC -o "$work/libinsncount.so" "$root/tools/qemu/insncount.c"
(cd "$root/examples/kernel-check-m4" && cargo build --release --quiet)
elf="$root/examples/kernel-check-m4/target/thumbv7em-none-eabihf/release/tinyformer-kernel-check-m4"
addr() { "$bin_dir/llvm-nm" "$elf" | awk -v s="$1" '$3 == s { print "0x" $1 }'; }
run() {
  timeout 300 qemu-system-arm -machine mps2-an386 -cpu cortex-m4 -nographic \
    -semihosting-config enable=on,target=native "$@" -kernel "$elf"
}
for kernel in scalar dsp dsp_tokens; do
  run -plugin "$work/libinsncount.so,begin=$(addr ${kernel}_begin),end=$(addr ${kernel}_end)" \
    -d plugin -D "$work/$kernel.txt" >"$work/out.txt" || { cat "$work/out.txt"; exit 1; }
done
cat "$work/out.txt"
macs=$(awk '/^MACS/ { print $2 }' "$work/out.txt")
tokens=$(awk '/^TOKENS/ { print $2 }' "$work/out.txt")
for kernel in scalar dsp dsp_tokens; do
  total=$(tr ' ' '\n' <"$work/$kernel.txt" | sed -n 's/^total=//p')
  case $kernel in
    dsp_tokens) what="matmul_i8 ${tokens}x128x384 dsp" m=$((macs * tokens)) ;;
    *) what="matvec_i8 128x384 $kernel" m=$macs ;;
  esac
  awk -v k="$what" -v t="$total" -v m="$m" \
    'BEGIN { printf "%-27s %8d instructions, %.2f per MAC\n", k, t, t / m }'
done
