#!/usr/bin/env bash
# Where a firmware's instructions go: runs examples/cortex-m (the classifier, by
# default) or, with --generate, examples/cortex-m-generate (the stories260K decoder)
# under QEMU with the profiling plugin (tools/qemu/insnprofile.c) over its measured
# regions (the classifier's inferences, between tinyformer_inference_begin and _end;
# the decoder's sampled decode steps, between tinyformer_token_begin and _end), maps
# every executed address to its inlined call chain (llvm-symbolizer on the ELF's debug
# info) and prints instructions per region by the outermost function below the entry
# points, then inside it: for the classifier the innermost tinyformer function (a
# kernel or helper; what the compiler inlined is charged to the function it came
# from), for the decoder the first tinyformer function below it. Not part of CI; for
# finding what to optimize (tools/firmware-check.sh and tools/generate-check.sh measure
# the totals). Counts are exact and deterministic.
# Needs: what those checks need, plus llvm-symbolizer (apt: llvm).
# Usage: tools/firmware-profile.sh [--generate] [MODEL_FILE] [ROWS]
#   (ROWS: table length, default 30; 40 with --generate)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
if [ "${1:-}" = "--generate" ]; then
  shift
  mode=generate
  model=$(realpath "${1:-$root/models/stories260K/stories260K-int8.tfm}")
  rows=${2:-40}
  crate="$root/examples/cortex-m-generate"
  region=token
else
  mode=classify
  model=$(realpath "${1:-$root/models/default/sentiment-int8.tfm}")
  rows=${2:-30}
  crate="$root/examples/cortex-m"
  region=inference
fi
bin_dir="$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin"
symbolizer=$(command -v llvm-symbolizer || compgen -c llvm-symbolizer- | sort -V | tail -1 || true)
if [ -z "$symbolizer" ]; then
  echo "needs llvm-symbolizer (apt-get install llvm)" >&2
  exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

gcc -O2 -Wall -shared -fPIC -o "$work/libinsnprofile.so" "$root/tools/qemu/insnprofile.c"
(cd "$crate" && TINYFORMER_MODEL="$model" cargo build --release --quiet)
elf="$crate/target/thumbv7em-none-eabihf/release/$(basename "$crate" | sed 's/^/tinyformer-/')"
addr() { "$bin_dir/llvm-nm" "$elf" | awk -v s="$1" '$3 == s { print "0x" $1 }'; }
timeout 600 qemu-system-arm -machine mps2-an386 -cpu cortex-m4 -nographic \
  -semihosting-config enable=on,target=native \
  -plugin "$work/libinsnprofile.so,begin=$(addr tinyformer_${region}_begin),end=$(addr tinyformer_${region}_end)" \
  -d plugin -D "$work/profile.txt" -kernel "$elf" >/dev/null

python3 - "$elf" "$work/profile.txt" "$symbolizer" "$rows" "$mode" <<'PY'
import collections, re, subprocess, sys
elf, profile, symbolizer, rows, mode = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
counts, regions = collections.Counter(), 0
for line in open(profile):
    f = line.split()
    if f[0].startswith("0x"):
        counts[int(f[0], 16)] += int(f[1])
    elif f[0] == "INSNS":
        regions = int(f[1].split("=")[1])
pcs = sorted(counts)
out = subprocess.run([symbolizer, "--inlining", "--functions=short", "--demangle", f"--obj={elf}"],
                     input="".join(f"0x{pc:x}\n" for pc in pcs), capture_output=True,
                     text=True, check=True).stdout
chains = out.strip("\n").split("\n\n")
assert len(chains) == len(pcs), "llvm-symbolizer output does not match the addresses"
total = sum(counts.values())
if mode == "generate":
    ours = re.compile(r"/src/(kernels/|quant\.rs|model/|tokenizer/)")
    entry = {"step", "run", "prefill_with", "step_fixed"}
    unit, head = "decode steps", "per step"
    title = "operation (non-inlined function, or inlined into the step)"
else:
    ours = re.compile(r"/src/(kernels/|quant\.rs|model/)")
    entry = {"forward_fixed", "forward_fixed_with", "forward", "run", "main", "__cortex_m_rt_main"}
    unit, head = "inferences", "per inf."
    title = "stage (outermost function below the forward pass)"
op, inner = collections.Counter(), collections.Counter()
for pc, chain in zip(pcs, chains):
    lines = chain.split("\n")
    # (function without generic arguments, source location), outermost first
    frames = [(re.sub(r"<.*", "", lines[i]), lines[i + 1]) for i in range(0, len(lines) - 1, 2)][::-1]
    k = 0
    while k < len(frames) - 1 and frames[k][0] in entry:
        k += 1
    name = frames[k][0]
    if mode == "generate":
        # The first tinyformer function below the operation.
        below = next((f for f, loc in frames[k + 1:] if ours.search(loc)),
                     frames[k + 1][0] if k + 1 < len(frames) else "")
    else:
        # The innermost frame in tinyformer's kernels, quant or model code.
        below = next((f for f, loc in reversed(frames) if ours.search(loc)), frames[-1][0])
    op[name] += counts[pc]
    inner[(name, below)] += counts[pc]
print(f"{regions} {unit}, {total / regions:,.0f} instructions per {'step' if mode == 'generate' else 'inference'}\n")
print(f"{head:>11} {'share':>6}  {title}")
if mode != "generate":
    print(f"{'':>11} {'':>6}      innermost tinyformer function (>= 0.3%)")
for name, n in op.most_common(rows):
    print(f"{n / regions:>11,.0f} {100 * n / total:>5.1f}%  {name}")
    for (outer, below), m in inner.most_common():
        if outer == name and below and (mode == "generate" or below != name) and m >= 0.003 * total:
            print(f"{m / regions:>11,.0f} {100 * m / total:>5.1f}%      {below}")
PY
