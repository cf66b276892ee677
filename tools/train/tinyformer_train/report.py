"""OUT/EVAL.md from report.json: every figure is a measured one from this run."""

from __future__ import annotations

from pathlib import Path


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def write_eval_md(out: Path, r: dict, args) -> Path:
    ev, ins, files, ch = r["eval"], r["inspect_int8"], r["files"], r["budget"]["choice"]
    st, cfg = r["student"], r["student"]["config"]
    labels = r["data"]["labels"]
    seq = r["max_seq"]
    nw = r.get("windows", 1)
    wflag = f" --windows {nw}" if nw > 1 else ""
    if nw > 1:
        reading = (f"Texts are read as up to {nw} consecutive windows of {seq} tokens ([CLS] and [SEP] in each, "
                   f"{seq - 2} word pieces), the logits averaged over the windows, by PyTorch and by "
                   f"`tinyformer eval --windows {nw}` alike; pieces after the last window are left out "
                   f"({ev['int8']['truncated']} of {ev['int8']['examples']} test texts). The student trains on "
                   "every window of the training texts.")
        seen = f"{nw} windows of {seq} tokens"
    else:
        reading = (f"Texts are truncated to their first {seq} word pieces ([CLS] and [SEP] included), as on the "
                   f"device (`tinyformer eval` truncated {ev['int8']['truncated']} of {ev['int8']['examples']} "
                   "test texts).")
        seen = f"{seq} tokens"
    sizes = r["data"]["sizes"]
    L = ["# Evaluation report", "",
         f"Written by `{r['generator']}` (do not edit by hand; `report.json` beside it has every figure).",
         ""]
    if r["no_train"]:
        L += ["**`--no-train`: the student below was not trained (random weights). Its accuracy is chance; "
              "this report only shows that the pipeline runs.**", ""]
    L += ["## Data", "",
          f"{r['data']['source']}: {r['data']['examples']} examples after dropping "
          f"{r['data']['duplicates_dropped']} exact duplicates; {len(labels)} classes "
          f"({', '.join(labels)}); {r['data']['split']}.",
          f"Train {sizes['train']['total']}, validation {sizes['val']['total']}, test {sizes['test']['total']} "
          f"(majority class on test: {_pct(r['data']['test_majority_accuracy'])}). The test split is used only "
          "for the figures below, never for training, model selection or int8 calibration.",
          reading,
          "", "## Accuracy on the test split", "",
          "| model | test accuracy | label agreement with tinyformer f32 |", "|---|---|---|",
          f"| TF-IDF + logistic regression (scikit-learn, whole text, same split) | {r['tfidf']['test_accuracy']:.4f} | - |"]
    if "teacher" in r:
        L.append(f"| teacher: all-MiniLM-L6-v2 fine-tuned (PyTorch, {seen}) | {r['teacher']['test_accuracy']:.4f} | - |")
    if st.get("trained"):
        L.append(f"| student, PyTorch float32 ({st['parameters']:,} parameters) | {st['test_accuracy']:.4f} | - |")
    for m, name in (("f32", "student, tinyformer f32"), ("f16", "student, tinyformer f16 (`model-f16.tfm`)"),
                    ("int8", "student, tinyformer int8 (`model-int8.tfm`)")):
        L.append(f"| {name} | {ev[m]['accuracy']:.4f} | {ev[m]['agreement']:.4f} |")
    L += ["", f"int8 minus float (tinyformer f32): {100 * (ev['int8']['accuracy'] - ev['f32']['accuracy']):+.2f} points; "
          f"int8 minus the TF-IDF baseline: {100 * (ev['int8']['accuracy'] - r['tfidf']['test_accuracy']):+.2f} points "
          f"({ev['int8']['examples']} test examples: one example is {100 / ev['int8']['examples']:.2f} points).",
          "", "Per class (int8):", "", "| label | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    for c in ev["int8"]["per_class"]:
        L.append(f"| {c['label']} | {c['precision']:.4f} | {c['recall']:.4f} | {c['f1']:.4f} | {c['support']} |")
    L += ["", "Confusion matrix (int8; rows: gold label, columns: predicted):", "",
          "| gold \\ predicted | " + " | ".join(ev["int8"]["labels"]) + " |",
          "|---" * (len(labels) + 1) + "|"]
    for lab, row in zip(ev["int8"]["labels"], ev["int8"]["confusion"]):
        L.append(f"| {lab} | " + " | ".join(str(x) for x in row) + " |")
    plan = ins["memory_plan"]
    L += ["", "## Size and the choice of student", "",
          "| | bytes |", "|---|---|",
          f"| int8 file (`model-int8.tfm`) | {files['int8']:,} |",
          f"| f16 file | {files['f16']:,} |",
          f"| f32 file | {files['f32']:,} |",
          f"| arena at {plan['seq']} tokens (int8, `tinyformer inspect --seq {seq}`) | {plan['arena_bytes']:,} |",
          f"| flash budget | {r['budgets']['flash_bytes']:,} |",
          f"| arena budget | {r['budgets']['arena_bytes']:,} |",
          "",
          f"Student: {cfg['num_hidden_layers']} layers, hidden {cfg['hidden_size']}, {cfg['num_attention_heads']} heads, "
          f"FFN {cfg['intermediate_size']}, vocabulary {cfg['vocab_size']} (own WordPiece, trained on the train split; "
          f"{ch['vocab_requested']} requested), {cfg['max_position_embeddings']} positions.",
          "", f"Rule: {r['budget']['rule']}. Candidates tried, largest first (sizes measured on a random "
          "checkpoint of the same shape and vocabulary converted by `tinyformer`):", "",
          "| layers | hidden | vocabulary | int8 file | arena | fits | note |", "|---|---|---|---|---|---|---|"]
    for a in r["budget"]["attempts"]:
        L.append(f"| {a['layers']} | {a['hidden']} | {a['vocab'] if a['vocab'] is not None else a['vocab_requested']} | "
                 f"{format(a['file_bytes'], ',') if a['file_bytes'] is not None else '~' + format(a['estimate_bytes'], ',') + ' (estimate)'} | "
                 f"{format(a['arena_bytes'], ',') if a['arena_bytes'] is not None else '-'} | {'yes' if a['fits'] else 'no'} | {a['note']} |")
    if st.get("trained"):
        tr = st["training"]
        L += ["", "## Training", "",
              f"Student: {tr['epochs']} epochs on {tr['distill_examples']:,} texts "
              f"({'every window of ' if nw > 1 else ''}"
              f"{'train split plus ' + str(tr['aug_copies']) + ' augmented copies labelled by the teacher, distilled' if tr['aug_copies'] else 'train split, gold labels only (--teacher none)'}), "
              f"lr {tr['lr']}, batch {tr['batch']}, EMA {tr['ema']}.",
              f"Test texts: {st['vocab']['test_unk_tokens']} [UNK] pieces, {st['vocab']['test_truncated']} truncated."]
    t = r["times_seconds"]
    L += ["", "Phase times (s): " + ", ".join(f"{k} {v}" for k, v in t.items()) +
          f" on {r['environment']['threads']} threads ({r['environment']['cpu_count']} CPUs).", ""]
    m = out / "model-int8.tfm"  # as given on the command line: the report is read beside it
    L += ["## Use the model", "", "```sh",
          f"tinyformer classify -m {m}{wflag} \"some text\" [--json]",
          f"tinyformer eval -m {m}{wflag} --data {out / 'data' / 'test.tsv'}",
          f"tinyformer inspect {m} --seq {seq}", "```", "",
          "On a device (copy `model-int8.tfm` beside your crate's `src/`; the path is relative to the source file):",
          "", "```rust",
          "static MODEL: &[u8] = tinyformer::include_model!(\"../model-int8.tfm\");",
          f"static ARENA: StaticArena<{{ tinyformer::arena_bytes(MODEL, {seq}) }}> = StaticArena::new(); "
          f"// {plan['arena_bytes']:,} bytes",
          "// then as in the README's \"On a microcontroller\": encode, forward_fixed, probabilities_q15;",
          *([f"// a longer text: encode_window at skip = 0, {seq - 2}, ... (up to {nw} windows), "
             "sum the forward_fixed outputs, divide by the count, then probabilities_q15;"] if nw > 1 else []),
          f"// scores has {len(labels)} entries, label i = model.label(i): " +
          ", ".join(f"{i} {lab}" for i, lab in enumerate(labels)),
          "```", ""]
    path = out / "EVAL.md"
    path.write_text("\n".join(L))
    return path
