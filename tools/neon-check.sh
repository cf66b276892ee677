#!/usr/bin/env bash
# The AArch64 NEON int8 kernels against the scalar reference, under QEMU user mode.
#  1. Cross-compiles the core's unit tests for aarch64-unknown-linux-gnu (release
#     profile: the code that ships) and runs the `kernels::matvec` ones (every
#     available kernel on vector lengths 0..=300 and on matrices of 0..=9 rows, random
#     and -128/127 extremes, compared with the reference) on two emulated CPUs:
#     - `max` (Armv8.x with the dot-product extension): the SDOT kernel (NeonDot), the
#       baseline NEON kernel (Neon) and the reference;
#     - `cortex-a53` (Armv8.0-A, no dot product): run-time detection must leave NeonDot
#       out (SDOT is an illegal instruction there); Neon and the reference run.
#     Fails on a mismatch, or if a CPU did not get the kernels it should have.
#  2. Counts the instructions of one 128x384 matrix-vector product with each kernel
#     (test `instruction_count_probe`, QEMU TCG plugin tools/qemu/insncount.c) and
#     prints instructions per MAC. Instructions, not cycles: QEMU models no pipeline.
# Needs: gcc, rustup target aarch64-unknown-linux-gnu; Debian gcc-aarch64-linux-gnu,
# libc6-dev-arm64-cross, qemu-user.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
tests=(test -p tinyformer --lib --release --target aarch64-unknown-linux-gnu --quiet)
qemu=(qemu-aarch64 -L /usr/aarch64-linux-gnu)
cargo "${tests[@]}" --no-run
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# cpu, then the lines the kernel report (test `report_available_kernels`) must contain.
check() {
  local cpu=$1
  shift
  echo "-- qemu-aarch64 -cpu $cpu"
  CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="${qemu[*]} -cpu $cpu" \
    cargo "${tests[@]}" kernels::matvec -- --nocapture --test-threads=1 >"$work/log" 2>&1 ||
    { cat "$work/log"; echo "neon-check: tests failed on -cpu $cpu" >&2; exit 1; }
  # The report lines may follow libtest's progress dots on the same line.
  grep -oE '(int8 kernel|test result).*' "$work/log" >"$work/report"
  cat "$work/report"
  for want in "$@"; do
    grep -qxF "int8 kernel $want" "$work/report" ||
      { echo "neon-check: expected 'int8 kernel $want' on -cpu $cpu" >&2; exit 1; }
  done
}
check max "Scalar: tested" "Neon: tested" "NeonDot: tested" "best: NeonDot"
check cortex-a53 "Scalar: tested" "Neon: tested" "NeonDot: not available" "best: Neon"

echo "-- instructions per MAC (qemu-aarch64 -cpu max)"
gcc -O2 -Wall -shared -fPIC -o "$work/libinsncount.so" tools/qemu/insncount.c
plugin="$work/libinsncount.so,begin_sym=tinyformer_int8_cost_begin,end_sym=tinyformer_int8_cost_end"
for kernel in Scalar Neon NeonDot; do
  CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="${qemu[*]} -cpu max -plugin $plugin -d plugin -D $work/$kernel.txt" \
    TINYFORMER_COST_KERNEL=$kernel cargo "${tests[@]}" kernels::matvec::tests::instruction_count_probe \
    -- --ignored --exact --nocapture >"$work/log" 2>&1 ||
    { cat "$work/log"; echo "neon-check: instruction-count probe failed for $kernel" >&2; exit 1; }
  macs=$(grep -oE "int8 cost probe: $kernel MACS [0-9]+" "$work/log" | awk '{ print $NF }')
  read -r regions total < <(sed -n 's/^INSNS regions=\([0-9]*\) total=\([0-9]*\).*/\1 \2/p' "$work/$kernel.txt")
  [ "${regions:-0}" = 1 ] && [ -n "$macs" ] ||
    { cat "$work/log" "$work/$kernel.txt"; echo "neon-check: no count for $kernel" >&2; exit 1; }
  awk -v k="$kernel" -v t="$total" -v m="$macs" \
    'BEGIN { printf "matvec_i8 128x384 %-7s %8d instructions, %.3f per MAC\n", k, t, t / m }'
done
