#!/usr/bin/env bash
# The decoder firmware (examples/cortex-m-generate) on an emulated Cortex-M4F (QEMU
# mps2-an386), end to end:
#  1. builds it with the int8 stories260K model in flash and runs it under QEMU with
#     the instruction-count plugin (tools/qemu/insncount.c), counting between the
#     markers around each decode step, then once more counting the prompt's prefill;
#  2. checks that both runs' token ids (sampled: temperature 0.8, top-p 0.9, seed 42;
#     greedy) and streamed text are identical to `tinyformer generate --json` on the
#     host, run with the prompt and settings the firmware prints;
#  3. prints the footprint (flash, model, static RAM, arena at context 256 and 512,
#     peak stack) and the deterministic cost: guest instructions per generated token,
#     and fails when one of them is over its budget (below; bundled model only).
# Needs: qemu-system-arm, gcc, rustup target thumbv7em-none-eabihf, llvm-tools.
# Usage: tools/generate-check.sh [MODEL_FILE]   (default: the bundled int8 stories260K)
set -euo pipefail

# Budgets: regression guards on deterministic figures (same toolchain, same code: same
# numbers), checked for the bundled model, each set about 4% above the value measured
# when it was last set. A change that needs more raises the budget in the same commit:
# run this script, take the figure it prints, set the budget about 4% above it and
# update the measured value in the comment.
export BUDGET_FLASH_BYTES=444000             # measured 440,336 (rustc 1.95.0, 2026-12-01)
export BUDGET_STATIC_RAM_BYTES=93400         # measured 89,828
export BUDGET_STACK_PEAK_BYTES=3160          # measured 3,028
export BUDGET_INSNS_PER_TOKEN=1242000        # measured 1,192,669 (mean, sampled run)

root=$(cd "$(dirname "$0")/.." && pwd)
model=$(realpath "${1:-$root/models/stories260K/stories260K-int8.tfm}")
if [ "$model" = "$(realpath "$root/models/stories260K/stories260K-int8.tfm")" ]; then
  export CHECK_BUDGETS=1
else
  export CHECK_BUDGETS=0
fi
crate="$root/examples/cortex-m-generate"
bin_dir="$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

gcc -O2 -Wall -shared -fPIC -o "$work/libinsncount.so" "$root/tools/qemu/insncount.c"
(cd "$crate" && TINYFORMER_MODEL="$model" cargo build --release --quiet)
elf="$crate/target/thumbv7em-none-eabihf/release/tinyformer-cortex-m-generate"
addr() { "$bin_dir/llvm-nm" "$elf" | awk -v s="$1" '$3 == s { print "0x" $1 }'; }
# Runs the firmware under QEMU, counting instructions between markers `$1_begin` and
# `$1_end` into $work/insns-$1.txt (totals and each region's count); the console
# output goes to standard output.
qemu() {
  timeout 600 qemu-system-arm -machine mps2-an386 -cpu cortex-m4 -nographic \
    -semihosting-config enable=on,target=native \
    -plugin "$work/libinsncount.so,begin=$(addr "$1_begin"),end=$(addr "$1_end"),each=1" \
    -d plugin -D "$work/insns-$1.txt" -kernel "$elf"
}
for marker in tinyformer_token tinyformer_prefill; do
  if ! qemu $marker >"$work/device-$marker.txt"; then
    echo "FAIL: the firmware exited with failure (or timed out):" >&2
    tail -5 "$work/device-$marker.txt" >&2
    exit 1
  fi
done
mv "$work/device-tinyformer_token.txt" "$work/device.txt"
mv "$work/device-tinyformer_prefill.txt" "$work/device-prefill.txt"
if ! cmp -s "$work/device.txt" "$work/device-prefill.txt"; then
  echo "FAIL: two runs of the firmware printed different output" >&2
  exit 1
fi

# The host generates with the firmware's prompt and settings, as its output states them.
python3 - "$work/device.txt" >"$work/runs.txt" <<'PY'
import re, sys
lines = open(sys.argv[1]).read().splitlines()
prompt = next((l[len("PROMPT "):] for l in lines if l.startswith("PROMPT ")), None)
if prompt is None:
    sys.exit("FAIL: no PROMPT line in the firmware's output")
# The prompt as a Rust `escape_debug` literal; the check keeps to plain ASCII text.
if not re.fullmatch(r'"[ -!#-\[\]-~]*"', prompt):
    sys.exit(f"FAIL: the check expects a printable ASCII prompt, got {prompt}")
print(prompt[1:-1])
for l in lines:
    if l.startswith("RUN "):
        f = dict(kv.split("=") for kv in l.split()[2:])
        # Q16 settings back to the decimal the host converts to the same Q16 value.
        print(l.split()[1], f["max_new_tokens"], f["ctx"], int(f["temperature_q16"]) / 65536,
              f["top_k"], int(f["top_p_q16"]) / 65536, f["seed"])
PY
prompt=$(head -1 "$work/runs.txt")
while read -r name max_new ctx temperature top_k top_p seed; do
  cargo run --release --quiet --manifest-path "$root/Cargo.toml" -p tinyformer-cli -- \
    generate -m "$model" "$prompt" -n "$max_new" --ctx "$ctx" --temperature "$temperature" \
    --top-k "$top_k" --top-p "$top_p" --seed "$seed" --json >"$work/host-$name.json"
done < <(tail -n +2 "$work/runs.txt")
"$bin_dir/llvm-size" -A "$elf" >"$work/sections.txt"

python3 - "$work" <<'PY'
import json, os, re, sys
work = sys.argv[1]
lines = open(f"{work}/device.txt").read().splitlines()
if not any(l.startswith("FOOTPRINT ") for l in lines):
    sys.exit("FAIL: the firmware did not finish:\n" + "\n".join(lines[-5:]))

def unescape(literal):
    """A Rust `escape_debug` string between double quotes, back to text."""
    simple = {"n": "\n", "r": "\r", "t": "\t", "0": "\0", "\\": "\\", '"': '"', "'": "'"}
    def one(m):
        e = m.group(1)
        return chr(int(e[2:-1], 16)) if e.startswith("u{") else simple[e]
    return re.sub(r"\\(u\{[0-9a-f]+\}|.)", one, literal[1:-1])

runs, current = {}, None
for l in lines:
    if l.startswith("RUN "):
        current = {"settings": l.split()[2:], "ids": [], "text": ""}
        ctx = int(dict(kv.split("=") for kv in current["settings"])["ctx"])
        runs[l.split()[1]] = current
    elif l.startswith("TOKEN "):
        _, id_, literal = l.split(" ", 2)
        current["ids"].append(int(id_))
        current["text"] += unescape(literal)
    elif l.startswith("TEXT_REST "):
        current["text"] += unescape(l.split(" ", 1)[1])
    elif l.startswith("END "):
        current["end"] = l.split()[2:]
for name in ("sampled", "greedy"):
    host = json.load(open(f"{work}/host-{name}.json"))
    dev = runs.get(name)
    if dev is None:
        sys.exit(f"FAIL: no {name} run in the firmware's output")
    if dev["ids"] != host["ids"]:
        first = next((i for i, (a, b) in enumerate(zip(dev["ids"], host["ids"])) if a != b),
                     min(len(dev["ids"]), len(host["ids"])))
        sys.exit(f"FAIL: {name}: device and host token ids differ at index {first} "
                 f"(device {len(dev['ids'])} tokens, host {len(host['ids'])})")
    if dev["text"] != host["text"]:
        sys.exit(f"FAIL: {name}: same ids, but the streamed text differs:\n"
                 f"device {dev['text']!r}\nhost   {host['text']!r}")
    print(f"{name} ({' '.join(dev['settings'])}): device and host agree on "
          f"{len(dev['ids'])} generated tokens and their text ({' '.join(dev['end'])})")
sampled = runs["sampled"]
story = json.load(open(f"{work}/host-sampled.json"))["prompt"] + sampled["text"]
print("\nthe sampled story, as the device streamed it:\n  " + story.replace("\n", "\n  ") + "\n")

foot = dict(kv.split("=") for l in lines if l.startswith("FOOTPRINT ") for kv in l.split()[1:])
sections = {}
for l in open(f"{work}/sections.txt"):
    parts = l.split()
    if len(parts) >= 2 and parts[0].startswith(".") and parts[1].isdigit():
        sections[parts[0]] = int(parts[1])
flash = sum(sections.get(k, 0) for k in (".vector_table", ".text", ".rodata", ".data"))
static_ram = sections.get(".data", 0) + sections.get(".bss", 0)
stack_peak = int(foot["stack_peak_bytes"])
max_seq = foot["max_seq"]
rows = [
    ("flash (.vector_table + .text + .rodata + .data, model included)", flash),
    ("  of which the model", int(foot["model_bytes"])),
    ("  of which code (.text)", sections.get(".text", 0)),
    ("static RAM (.data + .bss: the static arena and sampler scratch)", static_ram),
    ("  of which the static arena", int(foot["arena_static_bytes"])),
    (f"arena needed at context {ctx} (KV cache + one token's scratch)",
     int(foot[f"arena_bytes_ctx{ctx}"])),
    (f"arena needed at context {max_seq} (the model's max_seq)", int(foot["arena_bytes_max_seq"])),
    ("peak stack (painted, measured)", stack_peak),
]
print("footprint (bytes):")
for name, value in rows:
    print(f"  {name:<66} {value:>9,}")

def insns(marker):
    """The plugin's totals and the count of each region, in order."""
    totals, each = {}, []
    for l in open(f"{work}/insns-{marker}.txt"):
        f = l.split()
        if f and f[0] == "REGION":
            each.append(int(f[2]))
        elif f and f[0] == "INSNS":
            totals = {k: int(v) for k, v in (x.split("=") for x in f[1:])}
    if not totals or len(each) != totals["regions"] or sum(each) != totals["total"]:
        sys.exit(f"FAIL: unexpected plugin output for {marker}")
    return totals, each
(steps, per_step), (prefill, _) = insns("tinyformer_token"), insns("tinyformer_prefill")
prompt_tokens = int(dict(s.split("=") for s in sampled["settings"])["prompt_tokens"])
if steps["regions"] != len(sampled["ids"]) - 1 or prefill["regions"] != 1:
    sys.exit(f"FAIL: {steps['regions']} decode steps counted for {len(sampled['ids'])} tokens")
# Step i runs generated token i at position prompt_tokens + i, attending to that many
# cached positions plus itself: fit instructions = fixed + slope * position.
pos = [prompt_tokens + i for i in range(len(per_step))]
n = len(pos)
mean_pos, mean = sum(pos) / n, sum(per_step) / n
slope = (sum((p - mean_pos) * (c - mean) for p, c in zip(pos, per_step))
         / sum((p - mean_pos) ** 2 for p in pos))
fixed = mean - slope * mean_pos
print(f"\ncost on Cortex-M4 (QEMU TCG instruction count, deterministic), sampled run, "
      f"context {ctx}:")
print(f"  prefill of {prompt_tokens} prompt tokens and the first sample: "
      f"{prefill['total']:,} instructions ({prefill['total'] / prompt_tokens:,.0f} per prompt token)")
print(f"  decode steps (model step + sampling of the next token): {n}, positions {pos[0]}..{pos[-1]}")
print(f"  instructions per generated token: {mean:,.0f} mean "
      f"(first {per_step[0]:,}, last {per_step[-1]:,})")
print(f"  fit: {fixed:,.0f} + {slope:,.1f} per position "
      f"(at position {ctx - 1}, the last of the context: {fixed + slope * (ctx - 1):,.0f})")
target = 1_200_000
print(f"  target: at most {target:,} per generated token at context {ctx}: "
      + ("met" if mean <= target else f"not met ({mean / target:.2f}x; tools/generate-profile.sh shows where they go)"))
print(f"  whole program (both runs, printing included): {steps['all']:,} instructions")

budgets = [
    ("flash", flash, "BUDGET_FLASH_BYTES"),
    ("static RAM", static_ram, "BUDGET_STATIC_RAM_BYTES"),
    ("peak stack", stack_peak, "BUDGET_STACK_PEAK_BYTES"),
    ("instructions per generated token", round(mean), "BUDGET_INSNS_PER_TOKEN"),
]
if os.environ["CHECK_BUDGETS"] != "1":
    print("\nbudgets: not checked (they are for the bundled model)")
    sys.exit(0)
print("\nbudgets (tools/generate-check.sh, top):")
over = []
for name, value, var in budgets:
    limit = float(os.environ[var])
    limit_text = f"{limit:,.0f}" if limit.is_integer() else os.environ[var]
    print(f"  {name:<34} {value:>10,} of {limit_text:>10}  {'ok' if value <= limit else 'OVER'}")
    if value > limit:
        over.append(f"{name} {value:,} > {var}={os.environ[var]}")
if over:
    sys.exit("FAIL: over budget: " + "; ".join(over))
PY
