#!/usr/bin/env bash
# Smoke test of tinyformer-train without PyTorch (CI runs it; about a minute once the
# release CLI is built). On a small synthetic 3-class data set it checks:
#  - the clear errors (exit 2, message naming the file / column): one class, an empty
#    file, invalid UTF-8, a missing column, a flash budget no student meets;
#  - with --no-train, every phase but the PyTorch ones (teacher, augmentation,
#    distillation): read + validate + stratified split, TF-IDF baseline, WordPiece
#    vocabulary, budget fitting (probe conversions with `tinyformer`), export of the
#    (untrained) student checkpoint, conversion to f32/f16/int8 with calibration,
#    `tinyformer eval`, EVAL.md; then the exported model classifies with `tinyformer`;
#  - the same from separate --train (CSV) / --test (JSON Lines) files.
# Training itself (teacher, distillation) is covered only by a full run (README,
# "Train your own classifier"), which needs PyTorch.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
venv=${TRAIN_SMOKE_VENV:-$root/target/train-smoke-venv}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r tools/train/requirements-smoke.txt
# The package as a user installs it: the `tinyformer-train` console script (pyproject.toml).
"$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps -e tools/train
cargo build --release --quiet -p tinyformer-cli
tf="$root/target/release/tinyformer"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
train() { "$venv/bin/tinyformer-train" --tinyformer "$tf" "$@"; }

# Three topics told apart by a few keywords among common words; 150 rows, seeded.
"$venv/bin/python" - "$work" <<'PY'
import csv, json, random, sys
out = sys.argv[1]
rng = random.Random(0)
topics = {"sport": "match goal team player coach season league win score cup".split(),
          "tech": "software phone chip computer internet network data app code device".split(),
          "money": "bank market shares profit price economy trade investor rate growth".split()}
common = "the a of and to in said on with for it was this that".split()
def rows(n):
    for i in range(n):
        lab = list(topics)[i % 3]
        yield " ".join(rng.choice(topics[lab] if rng.random() < 0.4 else common)
                       for _ in range(rng.randint(6, 40))), lab
def write_csv(path, data):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f); w.writerow(["text", "label"]); w.writerows(data)
write_csv(f"{out}/topics.csv", rows(150))
write_csv(f"{out}/train.csv", rows(120))
with open(f"{out}/test.jsonl", "w", encoding="utf-8") as f:
    for t, lab in rows(30):
        f.write(json.dumps({"text": t, "label": lab}) + "\n")
write_csv(f"{out}/one-class.csv", [("some text", "a"), ("more text", "a"), ("other text", "a")])
open(f"{out}/empty.csv", "w").close()
with open(f"{out}/latin1.csv", "wb") as f:
    f.write(b"text,label\nfine,a\ncaf\xe9 au lait,b\n")
PY

fail() { echo "FAIL: $*" >&2; exit 1; }
# expect_error MESSAGE ARGS...: exit status 2 and MESSAGE on stderr.
expect_error() {
  local msg=$1; shift
  local status=0
  train "$@" -o "$work/err" --no-train 2>"$work/stderr" >/dev/null || status=$?
  [ "$status" = 2 ] || fail "tinyformer-train $* exited $status, expected 2: $(cat "$work/stderr")"
  grep -qF "$msg" "$work/stderr" || fail "tinyformer-train $*: expected \"$msg\" in: $(cat "$work/stderr")"
  echo "ok: $(tail -1 "$work/stderr")"
}
expect_error "one-class.csv: column 'label' has a single class ('a')" --data "$work/one-class.csv"
expect_error "empty.csv: the file is empty" --data "$work/empty.csv"
expect_error "latin1.csv: line 3, byte 21: not valid UTF-8" --data "$work/latin1.csv"
expect_error "topics.csv: no column 'body' (--text-column)" --data "$work/topics.csv" --text-column body
expect_error "no student fits --flash-budget 102,400 bytes" --data "$work/topics.csv" --flash-budget 100KiB

# The whole pipeline but training, on one CSV; the budget search runs over every shape.
out="$work/out"
train --data "$work/topics.csv" -o "$out" --no-train --flash-budget 400KiB --min-vocab 200 --max-seq 32
size=$(stat -c %s "$out/model-int8.tfm")
[ "$size" -le 409600 ] || fail "model-int8.tfm is $size bytes, over the 400KiB budget"
grep -qF "Confusion matrix (int8" "$out/EVAL.md" || fail "EVAL.md has no confusion matrix"
grep -qF -- "--no-train" "$out/EVAL.md" || fail "EVAL.md does not say the student is untrained"
label=$("$tf" classify -m "$out/model-int8.tfm" "the team won the cup" | cut -f1)
case "$label" in money | sport | tech) echo "ok: the exported int8 model classifies: $label" ;;
  *) fail "classify printed label \"$label\", not one of money/sport/tech" ;; esac
"$venv/bin/python" - "$out/report.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
ev = r["eval"]["int8"]
assert ev["examples"] == 15 and ev["labels"] == ["money", "sport", "tech"], ev
assert r["files"]["int8"] == r["budget"]["choice"]["file_bytes"], "probe size != real size"
print(f"ok: report.json: int8 {r['files']['int8']} bytes = the budget probe's; eval on 15 test rows")
PY

# Separate files: CSV train, JSON Lines test, validation carved from train; texts of up
# to 40 words read in windows of 16 tokens.
train --train "$work/train.csv" --test "$work/test.jsonl" -o "$work/out2" --no-train \
  --layers 2 --hidden 96 --min-vocab 200 --max-seq 16 --windows 3 >/dev/null 2>"$work/stderr" ||
  fail "tinyformer-train --train/--test: $(cat "$work/stderr")"
"$tf" eval -m "$work/out2/model-int8.tfm" --data "$work/out2/data/test.tsv" --windows 3 >/dev/null ||
  fail "tinyformer eval on the --train/--test run"
grep -qF "up to 3 consecutive windows of 16 tokens" "$work/out2/EVAL.md" || fail "EVAL.md does not say how texts are read"
grep -qF -- "--windows 3 --data" "$work/out2/EVAL.md" || fail "EVAL.md's eval command lacks --windows"
"$venv/bin/python" - "$work/out2/report.json" <<'PY'
import json, sys
ev = json.load(open(sys.argv[1]))["eval"]
assert all(e["windows"] == 3 for e in ev.values()), ev
print(f"ok: --windows 3: eval read 3 windows, {ev['int8']['truncated']} of 30 test texts longer")
PY
echo "ok: --train/--test run converted and evaluated"
echo "tinyformer-train smoke test passed"
