#!/usr/bin/env python3
"""Decode tokens/s of tinyformer against llama2.c's run.c on one llama2.c checkpoint.

A benchmark, not a test (CI does not run it). Standard library only.

  run.c        f32           llama2.c's reference C runtime, built here with `cc -O3`
                             (no -fopenmp: one thread); its own `achieved tok/s`
  tinyformer   int8/f32/f16  `tinyformer bench --json` on the committed int8 file and
                             on files written by `tinyformer convert`

Both decode greedily from BOS for the same number of steps at the same context: run.c's
`-n STEPS` runs STEPS forward passes at positions 0..STEPS-1 with the checkpoint's
seq_len as its context (its KV cache), `tinyformer bench --ctx SEQ_LEN --steps STEPS`
the same. run.c's timing starts after its first step and includes its sampling (argmax
at temperature 0) and the decoding, printing and flushing of every token; tinyformer's
includes the argmax of every step's logits but prints nothing. run.c's clock has
millisecond resolution.

Before timing, the script checks that the comparison is like for like: tinyformer f32
must generate exactly run.c's text for STEPS greedy tokens (so both run the same token
sequence, and run.c did not stop early: it stops when it samples BOS).

Timing is interleaved: each round makes `--repeats` passes, each pass one decode per
runtime in a rotated order (one process each: run.c, or `tinyformer bench --rounds 1`,
which times one decode after an untimed one). A round's figure is the median of its
passes; a reported figure is the median over rounds, and a ratio is the median over
rounds of the ratio *within* a round, so load that drifts between rounds cancels. The
fastest single run of each runtime (the least disturbed) is reported too.

See tools/bench/README.md for the command line and the measured figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Where llama2.c's run.c lives on the project's machines (a checkout beside the repo);
# a fresh clone has neither: pass --run-c.
RUN_C_DEFAULTS = list(dict.fromkeys([
    Path("/work/shared/peers/llama2.c/run.c"),
    (ROOT.parent / "shared" / "peers" / "llama2.c" / "run.c").resolve(),
]))
ACHIEVED = re.compile(r"achieved tok/s:\s*([0-9.eE+-]+)")


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def run(cmd: list, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise SystemExit(f"`{shlex.join(str(c) for c in cmd)}` failed ({r.returncode}):\n"
                         f"{r.stderr.strip()}")
    return r


def find_run_c(arg: Path | None) -> Path:
    candidates = [arg] if arg else RUN_C_DEFAULTS
    for c in candidates:
        if c.is_file():
            return c.resolve()
    raise SystemExit(
        "llama2.c's run.c not found (looked at "
        + ", ".join(str(c) for c in candidates)
        + "). Get it with `git clone https://github.com/karpathy/llama2.c` and pass "
          "--run-c llama2.c/run.c.")


def checkpoint_config(path: Path) -> dict:
    """The 7 int32 of a llama2.c version-0 checkpoint header."""
    names = ["dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"]
    with path.open("rb") as f:
        head = f.read(28)
    if len(head) != 28:
        raise SystemExit(f"{path}: too short for a llama2.c checkpoint header")
    c = dict(zip(names, struct.unpack("<7i", head)))
    c["shared_classifier"] = c["vocab_size"] > 0
    c["vocab_size"] = abs(c["vocab_size"])
    return c


# --------------------------------------------------------------------------- runtimes


def run_c_decode(binary: Path, checkpoint: Path, tokenizer: Path, steps: int) -> tuple[float, str]:
    """(achieved tok/s, stdout) of one greedy run.c generation from BOS."""
    r = run([binary, checkpoint, "-z", tokenizer, "-t", "0.0", "-n", str(steps)])
    m = ACHIEVED.search(r.stderr)
    if not m:
        raise SystemExit(f"run.c printed no `achieved tok/s`:\n{r.stderr.strip()}")
    return float(m.group(1)), r.stdout


def tf_decode(tf: Path, file: Path, ctx: int, steps: int) -> dict:
    """`tinyformer bench --json --rounds 1` on a decoder: decode (and prefill) tokens/s
    of one timed run (after the binary's untimed warm-up run)."""
    r = run([tf, "bench", "-m", file, "--ctx", ctx, "--steps", steps, "--rounds", 1, "--json"])
    return json.loads(r.stdout.splitlines()[0])


def tf_generate(tf: Path, file: Path, ctx: int, steps: int) -> dict:
    r = run([tf, "generate", "-m", file, "-n", steps, "--temperature", "0", "--ctx", ctx,
             "--json", ""])
    return json.loads(r.stdout.splitlines()[0])


def common_prefix(a: str, b: str) -> int:
    return len(os.path.commonprefix([a, b]))


# --------------------------------------------------------------------------- output


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def markdown(res: dict) -> str:
    c = res["config"]
    lines = [
        f"**{Path(res['checkpoint']).name}** (dim {c['dim']}, {c['n_layers']} layers, "
        f"{c['n_heads']}/{c['n_kv_heads']} heads, ffn {c['hidden_dim']}, vocab {c['vocab_size']}): "
        f"greedy decode of {res['steps']} tokens from BOS at context {res['ctx']}, one thread each; "
        f"{res['rounds']} interleaved rounds x {res['repeats']} runs per runtime",
        "",
        "| runtime | mode | decode tok/s | rounds min-max | × run.c | × run.c rounds min-max "
        "| best tok/s | × run.c best |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in res["timing"]:
        lines.append(
            f"| {row['runtime']} | {row['mode']} | {row['tok_s']:.0f} | "
            f"{min(row['rounds_tok_s']):.0f}-{max(row['rounds_tok_s']):.0f} | "
            f"{row['vs_run_c']:.2f} | {min(row['rounds_vs_run_c']):.2f}-"
            f"{max(row['rounds_vs_run_c']):.2f} | {row['best_tok_s']:.0f} | "
            f"{row['best_vs_run_c']:.2f} |")
    lines += [
        "",
        "decode tok/s = median over rounds of each round's median run; × run.c = tokens/s "
        "relative to run.c (> 1 is faster), the median over rounds of the ratio within each "
        "round; best = the fastest single run over all rounds (least disturbed by other "
        "load), and its ratio to run.c's fastest. run.c's figure is its own `achieved tok/s` (timer from "
        "its second step, millisecond clock), which includes its argmax sampling and the "
        "decoding, printing and flushing of each token to a pipe; tinyformer's "
        "(`bench`) includes the argmax of each step's logits and prints nothing.",
        "",
    ]
    agree = res["agreement"]
    lines.append(
        f"Same tokens: tinyformer f32 generates {'exactly' if agree['f32_identical'] else 'NOT'} "
        f"run.c's text for the {res['steps']} steps ({agree['run_c_chars']} characters)"
        + "".join(f"; {m} generates the same text" if n == agree["run_c_chars"]
                  else f"; {m} agrees on the first {n} characters"
                  for m, n in agree["prefix_chars"].items())
        + ".")
    t = res["target"]
    if t["met"] is not None:
        lines += ["", f"Target int8 >= {t['ratio']:.1f}x run.c (`{res['machine']['cflags']}`): "
                      + ("met" if t["met"] else "not met") + f" ({t['int8_vs_run_c']:.2f}x)."]
    m = res["machine"]
    lines += ["", f"{m['cpu']}, {m['cores']} cores; load average {m['load_before']} before, "
                  f"{m['load_after']} after; {m['cc']} with `{m['cflags']}`; "
                  f"total {res['seconds']:.0f} s"]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    stories = ROOT / "models" / "stories260K"
    ap.add_argument("--run-c", type=Path, default=None,
                    help="llama2.c's run.c (default: /work/shared/peers/llama2.c/run.c or "
                         "../shared/peers/llama2.c/run.c beside the repository)")
    ap.add_argument("--cc", default="cc", help="C compiler (default: cc)")
    ap.add_argument("--cflags", default="-O3",
                    help="flags for run.c (default: -O3, as llama2.c's README builds it, "
                         "without -fopenmp)")
    ap.add_argument("--tinyformer", type=Path, default=ROOT / "target" / "release" / "tinyformer",
                    help="the tinyformer binary (build with `cargo build --release -p tinyformer-cli`)")
    ap.add_argument("--checkpoint", type=Path, default=stories / "stories260K.bin")
    ap.add_argument("--tokenizer", type=Path, default=stories / "tok512.bin")
    ap.add_argument("--int8", type=Path, default=stories / "stories260K-int8.tfm",
                    help="tinyformer int8 file of the checkpoint (default: the committed one)")
    ap.add_argument("--modes", nargs="+", default=["int8", "f32"], choices=["int8", "f32", "f16"],
                    help="tinyformer precisions to time (int8 is required for the target)")
    ap.add_argument("--steps", type=int, default=256,
                    help="forward passes from BOS per decode (run.c -n; tinyformer --steps)")
    ap.add_argument("--ctx", type=int, default=None,
                    help="context (default: the checkpoint's seq_len, run.c's KV cache size)")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    ap.add_argument("--repeats", type=int, default=5,
                    help="passes per round, one decode per runtime each (the round's figure "
                         "is their median)")
    ap.add_argument("--target", type=float, default=2.0, help="int8 / run.c ratio to reach")
    ap.add_argument("--work", type=Path, default=None,
                    help="keep the run.c binary and converted files here (default: a temp dir)")
    ap.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    ap.add_argument("--json-out", type=Path, help="also write the JSON here")
    args = ap.parse_args()
    start = time.time()
    load_before = " ".join(f"{v:.2f}" for v in os.getloadavg())

    run_c = find_run_c(args.run_c)
    tf = args.tinyformer
    if not tf.is_file():
        raise SystemExit(f"{tf}: not found; run `cargo build --release -p tinyformer-cli`")
    for p in (args.checkpoint, args.tokenizer):
        if not p.is_file():
            raise SystemExit(f"{p}: not found")
    config = checkpoint_config(args.checkpoint)
    ctx = args.ctx or config["seq_len"]
    if ctx != config["seq_len"]:
        log(f"note: run.c always uses the checkpoint's seq_len {config['seq_len']}, "
            f"tinyformer context {ctx}")
    if not 1 < args.steps < min(ctx, config["seq_len"] + 1):
        raise SystemExit(f"--steps {args.steps}: must be between 2 and "
                         f"{min(ctx - 1, config['seq_len'])} (run.c caps -n at seq_len, "
                         f"tinyformer bench needs steps < ctx)")

    with tempfile.TemporaryDirectory(prefix="compare_llama2c-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        binary = work / "run"
        cflags = shlex.split(args.cflags)
        log(f"{args.cc} {args.cflags} -o {binary} {run_c} -lm")
        run([args.cc, *cflags, "-o", binary, run_c, "-lm"])
        cc_version = run([args.cc, "--version"]).stdout.splitlines()[0]

        files = {}
        for mode in sorted(set(args.modes) | {"f32"}):  # f32 is needed for the token check
            if mode == "int8":
                if not args.int8.is_file():
                    raise SystemExit(f"{args.int8}: not found (or pass --int8 FILE)")
                files[mode] = args.int8
                continue
            out = work / f"{args.checkpoint.stem}-{mode}.tfm"
            log(f"tinyformer convert {args.checkpoint} --dtype {mode}")
            run([tf, "convert", args.checkpoint, "--tokenizer", args.tokenizer, "-o", out,
                 "--dtype", mode])
            files[mode] = out

        # Like for like: the same tokens, all STEPS of them, on both sides.
        _, run_c_text = run_c_decode(binary, args.checkpoint, args.tokenizer, args.steps)
        run_c_text = run_c_text.removesuffix("\n")
        gen = {m: tf_generate(tf, f, ctx, args.steps) for m, f in files.items()}
        f32 = gen["f32"]
        if len(f32["ids"]) != args.steps:
            raise SystemExit(
                f"greedy decoding ends after {len(f32['ids'])} tokens (run.c stops when it "
                f"samples BOS), so run.c would time fewer tokens: use --steps <= {len(f32['ids'])}")
        if f32["text"] != run_c_text:
            raise SystemExit("tinyformer f32 and run.c generate different text: not the same "
                             "model or tokenizer?\n"
                             f"run.c:      {run_c_text[:200]!r}\ntinyformer: {f32['text'][:200]!r}")
        agreement = {
            "f32_identical": True,
            "run_c_chars": len(run_c_text),
            "prefix_chars": {m: common_prefix(g["text"], run_c_text)
                             for m, g in gen.items() if m != "f32" and m in args.modes},
        }
        log(f"f32 greedy text identical to run.c's ({len(run_c_text)} characters)")

        # Interleaved timing: each round makes `repeats` passes over the runtimes (in
        # an order rotated every pass), one decode each.
        runtimes = [("run.c", "f32")] + [("tinyformer", m) for m in args.modes]
        runs = {rt: [] for rt in runtimes}  # per round, the tok/s of each pass
        prefill = {rt: [] for rt in runtimes[1:]}
        for r in range(args.rounds):
            for rt in runtimes:
                runs[rt].append([])
            for p in range(args.repeats):
                k = (r * args.repeats + p) % len(runtimes)
                for rt in runtimes[k:] + runtimes[:k]:
                    if rt[0] == "run.c":
                        v = run_c_decode(binary, args.checkpoint, args.tokenizer, args.steps)[0]
                    else:
                        b = tf_decode(tf, files[rt[1]], ctx, args.steps)
                        v = b["decode_tokens_per_s"]
                        prefill[rt].append(b["prefill_tokens_per_s"])
                    runs[rt][-1].append(v)
            log(f"round {r + 1}/{args.rounds} (load {os.getloadavg()[0]:.2f}): "
                + ", ".join(f"{n} {m} " + "/".join(f"{v:.0f}" for v in runs[(n, m)][-1])
                            for n, m in runtimes)
                + " tok/s")
    per_round = {rt: [statistics.median(v) for v in runs[rt]] for rt in runtimes}
    best = {rt: max(max(v) for v in runs[rt]) for rt in runtimes}

    base = per_round[("run.c", "f32")]
    timing = []
    for rt in runtimes:
        ratios = [a / b for a, b in zip(per_round[rt], base)]
        row = {"runtime": rt[0], "mode": rt[1], "tok_s": statistics.median(per_round[rt]),
               "rounds_tok_s": per_round[rt], "vs_run_c": statistics.median(ratios),
               "rounds_vs_run_c": ratios, "best_tok_s": best[rt],
               "best_vs_run_c": best[rt] / best[("run.c", "f32")], "runs_tok_s": runs[rt]}
        if rt in prefill:
            row["prefill_tok_s"] = statistics.median(prefill[rt])
        timing.append(row)
    int8 = next((t["vs_run_c"] for t in timing if t["mode"] == "int8"), None)
    res = {
        "checkpoint": str(args.checkpoint),
        "config": config,
        "steps": args.steps,
        "ctx": ctx,
        "rounds": args.rounds,
        "repeats": args.repeats,
        "timing": timing,
        "agreement": agreement,
        "target": {"ratio": args.target, "int8_vs_run_c": int8,
                   "met": None if int8 is None else int8 >= args.target},
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "load_before": load_before,
                    "load_after": " ".join(f"{v:.2f}" for v in os.getloadavg()),
                    "cc": cc_version, "cflags": args.cflags, "run_c": str(run_c),
                    "python": platform.python_version()},
        "seconds": time.time() - start,
    }
    print(json.dumps(res, indent=1) if args.json else markdown(res), flush=True)
    if args.json_out:
        args.json_out.write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
