#!/usr/bin/env bash
# The firmware example on an emulated Cortex-M4F (QEMU mps2-an386), end to end:
#  1. builds it with MODEL_FILE in flash and runs it under QEMU with the instruction
#     counting plugin (tools/qemu/insncount.c);
#  2. checks that its labels and int8 Q15 probabilities are bit-identical to
#     `tinyformer classify --json` on the host, for the same model and sentences;
#  3. prints the footprint (runtime code, model, static RAM, arena, peak stack) and the
#     deterministic cost: guest instructions per inference and per multiply-accumulate,
#     and fails when one of them is over its budget (below; bundled model only);
#     Then the size firmware (`--profile release-size --features defmt,small-crc,small-kernels`:
#     opt-level "z", LTO, panic = "abort", output as defmt frames, the 64-byte CRC
#     table; SIZE_PROFILES="release-s release-size" adds opt-level "s"): built, run,
#     its defmt frames decoded on the host (defmt-print) and checked line for line
#     against the plain-text build's (results, self-test), and its .text, .rodata,
#     runtime code (without the tokenizer's Unicode tables) and instructions per MAC
#     printed per profile, with a budget;
#  4. device fault: flashes a copy of the model with one payload byte flipped and checks
#     that the firmware refuses it at boot (checksum) and exits with failure;
#  5. memory fixed at compile time: the static arena is `tinyformer::arena_bytes(MODEL,
#     MAX_TOKENS)`, a const fn over the model's header; a build asking for one token
#     more than the model's max_seq must fail to compile, with that function's message;
#  6. boot self-test: the default build prints `SELF_TEST ok` (checked in step 2's run);
#     a build whose DSP matrix-vector kernel is broken on purpose
#     (TINYFORMER_BREAK_KERNEL_FOR_TEST=1, see build.rs; the model and its CRC intact)
#     must report `SELF_TEST FAILED` and exit with failure, before any result.
# Needs: qemu-system-arm, gcc, rustup target thumbv7em-none-eabihf, llvm-tools,
# defmt-print (`cargo install defmt-print --locked`).
# Usage: tools/firmware-check.sh [MODEL_FILE]   (default: the bundled int8 model)
# The firmware runs up to TINYFORMER_MAX_TOKENS tokens (default 64, from
# examples/cortex-m/.cargo/config.toml); set it for a model whose max_seq is below 64.
set -euo pipefail

# Budgets: regression guards on deterministic figures (same toolchain, same code: same
# numbers), checked for the bundled model, each set about 4% above the value measured
# when it was last set. A change that needs more raises the budget in the same commit:
# run this script, take the figure it prints, set the budget about 4% above it and
# update the measured value in the comment.
# Runtime code grew 78,912 -> 88,040 with the decoder's M4 work (the 32-bit
# requantization and softmax paths inlined at their call sites, the DSP
# weighted-value kernel linked in for every head size); instructions per MAC fell.
# The multi-token DSP kernel (tiles of 4 tokens, activations unpacked to int16 on the
# stack: 1.5 KiB of buffers) and the DSP weighted values for every head size took
# instructions per MAC 3.30 -> 2.62 for 2.7 KB of code (the kernel's stores are
# inlined per call site) and 1.6 KB of stack.
# The epilogues a channel at a time in 32-bit arithmetic (src/kernels/requant/channels.rs,
# loops compiled per requantization kind) and LayerNorm's 32-bit form took instructions
# per MAC 2.47 -> 1.86 for 4.7 KB of code.
# Then the tile kernels' rows, steps and activations by LDM/STM in one asm block, the
# epilogues' channel loops (activation, residual projections, keys/values, queries,
# contexts), LayerNorm's loops and its divisions in assembly or 32-bit arithmetic, and
# the attention scores through the tiles took 1.86 -> 1.49 for 7.6 KB of code. The
# instruction budget is issue 13's bar (1.5), not a margin above the measured value.
export BUDGET_RUNTIME_CODE_BYTES=110500 # measured 107,056 (rustc 1.95.0, 2026-12-01)
export BUDGET_STATIC_RAM_BYTES=20100   # measured 19,288 (the 3x96 default model)
export BUDGET_STACK_PEAK_BYTES=4200    # measured 4,028 (1.5 KiB of it the multi-token kernel's buffers)
export BUDGET_INSNS_PER_MAC=1.50       # measured 1.49 (6,851,472 per inference, 3x96 default model)
# The size firmware (opt-level "z", `--profile release-size --features defmt,small-crc,small-kernels`):
# runtime code without the tokenizer's Unicode tables (the figure issue 13 sets at most
# 32 KiB for). Capped at that goal rather than 4% above the measured value.
export BUDGET_SIZE_RUNTIME_CODE_BYTES=32768 # measured 31,872 (rustc 1.95.0; 42,424 before issue 13)
# Size profiles built, run and measured besides opt-level 3 (`release-s` is opt-level
# "s"; CI runs only "z": each one is a build and a QEMU run, about a minute), and the
# features of the size firmware.
SIZE_PROFILES=${SIZE_PROFILES:-release-size}
SIZE_FEATURES=${SIZE_FEATURES:-defmt,small-crc,small-kernels}

root=$(cd "$(dirname "$0")/.." && pwd)
model=$(realpath "${1:-$root/models/default/sentiment-int8.tfm}")
if [ "$model" = "$(realpath "$root/models/default/sentiment-int8.tfm")" ]; then
  export CHECK_BUDGETS=1
else
  export CHECK_BUDGETS=0
fi
sentences="$root/examples/cortex-m/sentences.txt"
bin_dir="$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

gcc -O2 -Wall -shared -fPIC -o "$work/libinsncount.so" "$root/tools/qemu/insncount.c"
(cd "$root/examples/cortex-m" && TINYFORMER_MODEL="$model" cargo build --release --quiet)
firmware_dir="${CARGO_TARGET_DIR:-$root/examples/cortex-m/target}/thumbv7em-none-eabihf"
elf="$firmware_dir/release/tinyformer-cortex-m"
addr() { "$bin_dir/llvm-nm" "$elf" | awk -v s="$1" '$3 == s { print "0x" $1 }'; }
# Runs the firmware last built under QEMU; extra QEMU arguments go before the kernel.
qemu() {
  timeout 600 qemu-system-arm -machine mps2-an386 -cpu cortex-m4 -nographic \
    -semihosting-config enable=on,target=native "$@" -kernel "$elf"
}
qemu -plugin "$work/libinsncount.so,begin=$(addr tinyformer_inference_begin),end=$(addr tinyformer_inference_end)" \
  -d plugin -D "$work/insns.txt" >"$work/device.txt"

if ! grep -q "^SELF_TEST ok" "$work/device.txt"; then
  echo "FAIL: the firmware's boot self-test did not pass (a model without a self-test section?):" >&2
  head -5 "$work/device.txt" >&2
  exit 1
fi
echo "boot self-test: $(grep "^SELF_TEST" "$work/device.txt")"

cargo run --release --quiet --manifest-path "$root/Cargo.toml" -p tinyformer-cli -- \
  classify -m "$model" --json <"$sentences" >"$work/host.jsonl"
cargo run --release --quiet --manifest-path "$root/Cargo.toml" -p tinyformer-cli -- \
  inspect "$model" --json >"$work/inspect.json"
"$bin_dir/llvm-size" -A "$elf" >"$work/sections.txt"
"$bin_dir/llvm-nm" -S --demangle "$elf" >"$work/symbols.txt"

python3 - "$work" <<'PY'
import json, os, sys
work = sys.argv[1]
lines = open(f"{work}/device.txt").read().splitlines()
device = [l.split(" ", 4) for l in lines if l.startswith("RESULT ")]
tokens = [int(l.split()[2]) for l in lines if l.startswith("TOKENS ")]
host = [json.loads(l) for l in open(f"{work}/host.jsonl")]
if not host or len(device) != len(host):
    sys.exit(f"FAIL: {len(device)} device results, {len(host)} host results\n" + "\n".join(lines[-5:]))
for (_, index, label, q15, text), h in zip(device, host):
    q15 = [int(v) for v in q15.split(",")]
    if label != h["label"] or q15 != h["scores_q15"] or text.strip() != h["text"]:
        sys.exit(f"FAIL: sentence {index}: device {label} {q15}, host {h['label']} {h['scores_q15']}")
print(f"device and host agree bit for bit on {len(host)} sentences (labels and Q15 probabilities)")

foot = dict(kv.split("=") for l in lines if l.startswith("FOOTPRINT ") for kv in l.split()[1:])
sections = {}
for l in open(f"{work}/sections.txt"):
    parts = l.split()
    if len(parts) >= 2 and parts[0].startswith(".") and parts[1].isdigit():
        sections[parts[0]] = int(parts[1])
model_bytes = int(foot["model_bytes"])
insns = dict(kv.split("=") for kv in open(f"{work}/insns.txt").read().split()[1:])
cfg = json.load(open(f"{work}/inspect.json"))["config"]
h, f, layers = cfg["hidden"], cfg["ffn"], cfg["layers"]
def macs(n):
    head = h * h + h * cfg["num_labels"]  # pooler + classifier on one row
    return layers * n * (4 * h * h + 2 * h * f + 2 * n * h) + head
total_macs = sum(macs(n) for n in tokens)
regions, total = int(insns["regions"]), int(insns["total"])
runtime_code = sections.get(".text", 0) + sections.get(".rodata", 0) - model_bytes
# The tokenizer's Unicode tables (src/tokenizer/tables.rs: character classes, accent
# stripping, lowercasing; generated data, not code), from the symbol table.
tables = sum(int(l.split()[1], 16) for l in open(f"{work}/symbols.txt")
             if len(l.split()) >= 4 and "tinyformer::tokenizer::tables::" in l)
static_ram = sections.get(".data", 0) + sections.get(".bss", 0)
stack_peak = int(foot["stack_peak_bytes"])
rows = [
    ("runtime code (.text + .rodata without the model)", runtime_code),
    ("  of which .text", sections.get(".text", 0)),
    ("  of which the tokenizer's Unicode tables (.rodata)", tables),
    ("model (in flash)", model_bytes),
    ("static RAM (.data + .bss, incl. the static arena buffer)", static_ram),
    ("static arena, exact at %s tokens (compile-time arena_bytes)" % foot["max_tokens"], int(foot["arena_bytes"])),
    ("peak stack (painted, measured)", stack_peak),
]
print("\nfootprint (bytes):")
for name, value in rows:
    print(f"  {name:<58} {value:>10}")
print(f"\ncost on Cortex-M4 (QEMU TCG instruction count, deterministic):")
print(f"  inferences {regions}, mean tokens {sum(tokens) / len(tokens):.1f}")
print(f"  instructions per inference {total / regions:,.0f}")
print(f"  multiply-accumulates per inference {total_macs / regions:,.0f}")
print(f"  instructions per MAC {total / total_macs:.2f}")

json.dump({"text": sections.get(".text", 0), "rodata": runtime_code - sections.get(".text", 0),
           "runtime_code": runtime_code, "tables": tables,
           "insns_per_mac": total / total_macs, "stack_peak": stack_peak},
          open(f"{work}/profile-release.json", "w"))

budgets = [
    ("runtime code", runtime_code, "BUDGET_RUNTIME_CODE_BYTES"),
    ("static RAM", static_ram, "BUDGET_STATIC_RAM_BYTES"),
    ("peak stack", stack_peak, "BUDGET_STACK_PEAK_BYTES"),
    ("instructions per MAC", round(total / total_macs, 2), "BUDGET_INSNS_PER_MAC"),
]
if os.environ["CHECK_BUDGETS"] != "1":
    print("\nbudgets: not checked (they are for the bundled model)")
    sys.exit(0)
print("\nbudgets (tools/firmware-check.sh, top):")
over = []
for name, value, var in budgets:
    limit = float(os.environ[var])
    limit_text = f"{limit:,.0f}" if limit.is_integer() else os.environ[var]
    print(f"  {name:<22} {value:>10,} of {limit_text:>10}  {'ok' if value <= limit else 'OVER'}")
    if value > limit:
        over.append(f"{name} {value:,} > {var}={os.environ[var]}")
if over:
    sys.exit("FAIL: over budget: " + "; ".join(over))
PY
grep -E "^HEAP" "$work/device.txt" || true

# 3b. the size firmware (examples/cortex-m/Cargo.toml): opt-level "z" (and "s" when
# asked) with defmt output and the small CRC table, run under QEMU, its frames decoded
# on the host and checked line for line against the plain-text opt-level 3 build, and
# its footprint and cost next to opt-level 3's.
for profile in $SIZE_PROFILES; do
  (cd "$root/examples/cortex-m" && TINYFORMER_MODEL="$model" \
    cargo build --profile "$profile" --features "$SIZE_FEATURES" --quiet)
  elf="$firmware_dir/$profile/tinyformer-cortex-m"
  qemu -plugin "$work/libinsncount.so,begin=$(addr tinyformer_inference_begin),end=$(addr tinyformer_inference_end)" \
    -d plugin -D "$work/insns-$profile.txt" >"$work/device-$profile.defmt"
  defmt-print -e "$elf" <"$work/device-$profile.defmt" >"$work/device-$profile.txt"
  "$bin_dir/llvm-size" -A "$elf" >"$work/sections-$profile.txt"
  "$bin_dir/llvm-nm" -S --demangle "$elf" >"$work/symbols-$profile.txt"
  python3 - "$work" "$profile" <<'PY'
import json, os, re, sys
work, profile = sys.argv[1:]
# defmt-print may put a prefix before the message: keep from the keyword on.
def lines(path):
    found = (re.search(r"(RESULT|TOKENS|SELF_TEST|FOOTPRINT) .*", l) for l in open(path))
    return [m.group(0) for m in found if m]
decoded, reference = lines(f"{work}/device-{profile}.txt"), lines(f"{work}/device.txt")
keep = lambda ls: [l for l in ls if not l.startswith("FOOTPRINT ")]
if not keep(decoded) or keep(decoded) != keep(reference):
    sys.exit(f"FAIL: the {profile} defmt build's decoded lines differ from the opt-level 3"
             " plain-text build's\n" + "\n".join(decoded[-5:]))
text_bytes = sum(len(l) + 1 for l in reference if l.startswith(("RESULT ", "TOKENS ", "FOOTPRINT ")))
print(f"{profile}: device and opt-level 3 build agree bit for bit (labels, Q15 probabilities,"
      f" self-test); defmt: {os.path.getsize(f'{work}/device-{profile}.defmt'):,} bytes of"
      f" frames on the wire for {text_bytes:,} bytes of text")
foot = dict(kv.split("=") for l in decoded if l.startswith("FOOTPRINT ") for kv in l.split()[1:])
sections = {p[0]: int(p[1]) for p in (l.split() for l in open(f"{work}/sections-{profile}.txt"))
            if len(p) >= 2 and p[0].startswith(".") and p[1].isdigit()}
tables = sum(int(l.split()[1], 16) for l in open(f"{work}/symbols-{profile}.txt")
             if len(l.split()) >= 4 and "tinyformer::tokenizer::tables::" in l)
insns = dict(kv.split("=") for kv in open(f"{work}/insns-{profile}.txt").read().split()[1:])
release_insns = dict(kv.split("=") for kv in open(f"{work}/insns.txt").read().split()[1:])
release = json.load(open(f"{work}/profile-release.json"))
# Same inferences as the opt-level 3 run: scale its instructions per MAC.
insns_per_mac = release["insns_per_mac"] * int(insns["total"]) / int(release_insns["total"])
json.dump({"text": sections[".text"], "rodata": sections[".rodata"] - int(foot["model_bytes"]),
           "runtime_code": sections[".text"] + sections[".rodata"] - int(foot["model_bytes"]),
           "tables": tables, "insns_per_mac": insns_per_mac,
           "stack_peak": int(foot["stack_peak_bytes"])}, open(f"{work}/profile-{profile}.json", "w"))
PY
done
python3 - "$work" "$SIZE_PROFILES" <<'PY'
import json, os, sys
work, profiles = sys.argv[1], sys.argv[2].split()
opt = {"release": "3", "release-s": '"s"', "release-size": '"z"'}
print("\nper profile (.rodata and runtime code without the model; runtime code = .text + .rodata;"
      "\ntables = the tokenizer's Unicode tables; opt-level 3 prints text, the size firmware defmt):")
print(f"  {'profile':<14} {'opt-level':>9} {'.text':>8} {'.rodata':>8} {'runtime code':>13}"
      f" {'without tables':>15} {'insns/MAC':>10} {'stack':>6}")
figures = {}
for profile in ["release"] + profiles:
    p = json.load(open(f"{work}/profile-{profile}.json"))
    figures[profile] = p["runtime_code"] - p["tables"]
    print(f"  {profile:<14} {opt.get(profile, '?'):>9} {p['text']:>8,} {p['rodata']:>8,}"
          f" {p['runtime_code']:>13,} {figures[profile]:>15,} {p['insns_per_mac']:>10.2f}"
          f" {p['stack_peak']:>6,}")
if "release-size" in figures:
    value = figures["release-size"]
    print(f"  goal: at most 32 KiB (32,768) without tables at opt-level \"z\": "
          + ("met" if value <= 32768 else f"not met ({value - 32768:,} bytes over)"))
    if os.environ["CHECK_BUDGETS"] == "1":
        limit = int(os.environ["BUDGET_SIZE_RUNTIME_CODE_BYTES"])
        print(f"  budget: runtime code without tables at \"z\" {value:,} of {limit:,}  {'ok' if value <= limit else 'OVER'}")
        if value > limit:
            sys.exit(f"FAIL: over budget: size-profile runtime code {value:,} > BUDGET_SIZE_RUNTIME_CODE_BYTES={limit}")
PY
elf="$firmware_dir/release/tinyformer-cortex-m"

# 4. device fault: a corrupted model in flash is refused before any inference.
python3 - "$model" "$work/corrupt.tfm" <<'PY'
import sys
data = bytearray(open(sys.argv[1], "rb").read())
data[len(data) // 2] ^= 0x01
open(sys.argv[2], "wb").write(data)
PY
(cd "$root/examples/cortex-m" && TINYFORMER_MODEL="$work/corrupt.tfm" cargo build --release --quiet)
if qemu >"$work/corrupt.txt"; then
  echo "FAIL: the firmware accepted a corrupted model" >&2
  exit 1
fi
if ! grep -q "^MODEL_INVALID .*checksum" "$work/corrupt.txt" || grep -q "^RESULT" "$work/corrupt.txt"; then
  echo "FAIL: expected MODEL_INVALID (checksum) and no result, got:" >&2
  cat "$work/corrupt.txt" >&2
  exit 1
fi
echo "device fault: corrupted model refused at boot: $(grep "^MODEL_INVALID" "$work/corrupt.txt")"

# 5. memory fixed at compile time: one token more than the model's max_seq does not build.
max_seq=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["config"]["max_seq"])' "$work/inspect.json")
if (cd "$root/examples/cortex-m" && TINYFORMER_MODEL="$model" TINYFORMER_MAX_TOKENS=$((max_seq + 1)) \
  cargo build --release --quiet 2>"$work/too-long.txt"); then
  echo "FAIL: a firmware asking for $((max_seq + 1)) tokens of a model with max_seq $max_seq compiled" >&2
  exit 1
fi
# (the wording around the message is the compiler's: `evaluation panicked: ...` today)
expected="tinyformer::arena_bytes: the length is longer than the model's max_seq"
if ! grep -q "^error\[E0080\]" "$work/too-long.txt" || ! grep -qF "$expected" "$work/too-long.txt"; then
  echo "FAIL: the build failed, but not with \"$expected\":" >&2
  cat "$work/too-long.txt" >&2
  exit 1
fi
echo "compile-time arena: $((max_seq + 1)) tokens of a model with max_seq $max_seq is refused by the compiler:" \
  "$(grep -m1 "^error\[E0080\]" "$work/too-long.txt")"

# 6. boot self-test: a kernel broken on purpose (one bit of the DSP matvec output) with
# an intact model (the CRC passes) is caught at boot.
(cd "$root/examples/cortex-m" && TINYFORMER_BREAK_KERNEL_FOR_TEST=1 TINYFORMER_MODEL="$model" \
  cargo build --release --quiet)
if qemu >"$work/broken.txt"; then
  echo "FAIL: the firmware with a broken kernel passed its boot" >&2
  cat "$work/broken.txt" >&2
  exit 1
fi
if ! grep -q "^SELF_TEST FAILED" "$work/broken.txt" || grep -q "^RESULT" "$work/broken.txt"; then
  echo "FAIL: expected SELF_TEST FAILED and no result from the broken-kernel build, got:" >&2
  cat "$work/broken.txt" >&2
  exit 1
fi
echo "broken kernel caught at boot: $(grep "^SELF_TEST" "$work/broken.txt")"
# Leave the ordinary firmware built.
(cd "$root/examples/cortex-m" && TINYFORMER_MODEL="$model" cargo build --release --quiet)
