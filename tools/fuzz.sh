#!/usr/bin/env bash
# Fuzzes every target of fuzz/ (cargo fuzz, libFuzzer + AddressSanitizer) for SECONDS
# each (default 60), starting from the committed seeds in fuzz/corpus/<target> and the
# inputs earlier runs on this machine found (fuzz/work/<target>, not committed).
# Prints per target the executions run, the corpus size and the crashes; exits non-zero
# if any target crashed, hung (-timeout) or ran out of memory (-rss_limit_mb). Crash
# inputs land in fuzz/artifacts/<target>/; reproduce one with
#   (cd fuzz && cargo "+$(<../tools/nightly-toolchain)" fuzz run TARGET artifacts/TARGET/crash-...)
# Usage: tools/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
targets=(validate tokenize classify convert_read generate gguf bytebpe)
t0=$(date +%s)

echo "== fuzz setup"
# cargo fuzz needs nightly (-Zsanitizer): the one pinned by date in
# tools/nightly-toolchain (shared with tools/miri.sh), installed under that name if
# missing, so the machine's `nightly` and default toolchains are left alone. Where it
# cannot be installed (machines that fetch no toolchain), the stable toolchain builds
# the same thing with RUSTC_BOOTSTRAP=1, which lets it accept the unstable sanitizer flag.
nightly=$(<tools/nightly-toolchain)
if rustup run "$nightly" rustc --version >/dev/null 2>&1 ||
  rustup toolchain install "$nightly" --profile minimal >/dev/null 2>&1; then
  toolchain=$nightly
else
  toolchain=stable
  export RUSTC_BOOTSTRAP=1
  echo "$nightly unavailable: using stable with RUSTC_BOOTSTRAP=1"
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  time cargo install cargo-fuzz --locked
fi
echo "toolchain: $(rustup run "$toolchain" rustc --version), $(cargo fuzz --version)"
t1=$(date +%s)
(cd fuzz && cargo "+$toolchain" fuzz build)
t2=$(date +%s)
echo "setup $((t1 - t0)) s, build $((t2 - t1)) s"

failed=()
for t in "${targets[@]}"; do
  echo "== fuzz $t (${seconds} s)"
  mkdir -p "fuzz/work/$t" "fuzz/artifacts/$t"
  log="fuzz/work/$t.log"
  before=$(find "fuzz/artifacts/$t" -type f | wc -l)
  rc=0
  (cd fuzz && cargo "+$toolchain" fuzz run "$t" "work/$t" "corpus/$t" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1) \
    >"$log" 2>&1 || rc=$?
  after=$(find "fuzz/artifacts/$t" -type f | wc -l)
  crashes=$((after - before))
  execs=$(grep -o 'number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1 || true)
  [ -n "$execs" ] || execs=$(grep -o '^#[0-9]*' "$log" | tail -1 | tr -d '#' || true)
  corpus=$(grep -o 'corp: [0-9]*/[0-9A-Za-z]*' "$log" | tail -1 | cut -d' ' -f2 || true)
  echo "$t: ${execs:-0} executions, corpus ${corpus:-?} (inputs/bytes), $crashes crashes, exit $rc"
  if [ "$rc" -ne 0 ] || [ "$crashes" -ne 0 ]; then
    failed+=("$t")
    grep -E -A30 '^==[0-9]+==|panicked|ERROR: libFuzzer' "$log" | head -60 || tail -40 "$log"
    ls -t "fuzz/artifacts/$t" | head -n "$crashes" | sed "s|^|new input: fuzz/artifacts/$t/|"
  fi
done

echo "fuzzing took $(($(date +%s) - t0)) s in all"
if [ "${#failed[@]}" -ne 0 ]; then
  echo "fuzz: crashes in ${failed[*]}"
  exit 1
fi
echo "fuzz: no crash in ${#targets[@]} targets"
