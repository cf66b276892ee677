#!/usr/bin/env bash
# Regenerates the committed seed corpora under fuzz/corpus/ from the test fixtures:
#   validate/     the two tiny fixtures shrunk (shrink_checkpoint.py) and converted to
#                 int8, f16 and f32 model files with the tinyformer CLI, plus variants
#                 with ReLU / tanh-GELU activations and [CLS] pooling
#   classify/     the same files, each followed by two request trailers (a sentence as
#                 text; raw ids with mask and token types), see fuzz_targets/classify.rs
#   tokenize/     texts from tests/fixtures/sentences.txt and the tokenizer parity
#                 fixtures, under several tokenizer settings and output lengths, and
#                 the models' raw tokenizer sections
#   convert_read/ the shrunk checkpoints packed as fuzz_targets/convert_read.rs reads
#   gguf/         tests/fixtures/gguf/types.gguf, and a small GGUF v2 file with the
#                 value and tensor types that fixture lacks (u8, i64, f64, bool arrays,
#                 alignment 16, a Q4_K tensor, which parses but does not dequantize);
#                 and two of the shrunk decoders below written as Llama GGUF files
#                 (tools/reference/gguf_from_llama2c.py, Q8_0 and Q4_1), which the
#                 target goes on to convert
#   bytebpe/      texts from tests/fixtures/bytebpe/goldens.jsonl under the four
#                 settings and several output lengths, and one invalid UTF-8 text
#   generate/     models/stories260K/stories260K.bin shrunk (shrink_llama2c.py) to two
#                 small shapes, tied and separate output heads, converted to f32, f16
#                 and int8 decoder files (int8 calibrated on
#                 tests/fixtures/stories/calibration.txt) with the tok512 tokenizer,
#                 each followed by a request trailer (fuzz_targets/generate.rs); and
#                 the real models/stories260K/stories260K-int8.tfm, bare (default request)
# Run from anywhere: `bash fuzz/make_corpus.sh`. Deterministic.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
corpus=fuzz/corpus
rm -rf "$corpus"
mkdir -p "$corpus"/{validate,classify,tokenize,convert_read,generate,gguf,bytebpe}

cargo build -q --release -p tinyformer-cli
cli=target/release/tinyformer
convert() { # DIR NAME DTYPE
  "$cli" convert "$1" -o "$corpus/validate/$2-$3.tfm" --dtype "$3" \
    --calibration tests/fixtures/sentences.txt 2>/dev/null
}
for m in cls mean; do
  python3 fuzz/shrink_checkpoint.py "tests/fixtures/tiny-bert-$m" "$work/$m"
  for d in int8 f16 f32; do
    convert "$work/$m" "$m" "$d"
  done
done
# The other activations and pooling modes: ReLU, tanh GELU, [CLS] without pooler.
cp -r "$work/cls" "$work/relu"
sed -i 's/"hidden_act": "gelu"/"hidden_act": "relu"/' "$work/relu/config.json"
convert "$work/relu" relu int8
cp -r "$work/mean" "$work/clstoken"
sed -i 's/"hidden_act": "gelu"/"hidden_act": "gelu_new"/' "$work/clstoken/config.json"
sed -i -e 's/"pooling_mode_cls_token": false/"pooling_mode_cls_token": true/' \
  -e 's/"pooling_mode_mean_tokens": true/"pooling_mode_mean_tokens": false/' "$work/clstoken/1_Pooling/config.json"
convert "$work/clstoken" clstoken int8
convert "$work/clstoken" clstoken f16

# Decoders: leading slices of stories260K (dim 64, 8 heads / 4 key-value heads, ffn
# 172, 5 layers, vocab 512, context 512). Shape a: dim 16, 2 heads / 1 key-value head,
# ffn 32, 2 layers, vocab 320, context 16. Shape b: dim 32, 4 heads / 4 key-value heads
# (no grouping), ffn 40, 1 layer, vocab 280, context 8.
stories=models/stories260K
python3 fuzz/shrink_llama2c.py $stories/stories260K.bin "$work/a-tied.bin" 16 2 1 32 2 320 16
python3 fuzz/shrink_llama2c.py $stories/stories260K.bin "$work/a-separate.bin" 16 2 1 32 2 320 16 separate
python3 fuzz/shrink_llama2c.py $stories/stories260K.bin "$work/b-tied.bin" 32 4 4 40 1 280 8
python3 fuzz/shrink_llama2c.py $stories/stories260K.bin "$work/b-separate.bin" 32 4 4 40 1 280 8 separate
mkdir -p "$work/decoders"
convert_decoder() { # NAME DTYPE
  "$cli" convert "$work/$1.bin" --tokenizer $stories/tok512.bin -o "$work/decoders/$1-$2.tfm" \
    --dtype "$2" --calibration tests/fixtures/stories/calibration.txt 2>/dev/null
}
for d in f32 f16 int8; do
  convert_decoder a-tied "$d"
done
convert_decoder a-separate f32
convert_decoder a-separate int8
convert_decoder b-tied int8
convert_decoder b-separate f16
convert_decoder b-separate int8
cp $stories/stories260K-int8.tfm "$corpus/generate/stories260K-int8"
python3 tools/reference/gguf_from_llama2c.py --model "$work/a-separate.bin" --type q8_0 \
  -o "$corpus/gguf/llama-a-separate-q8_0" >/dev/null
python3 tools/reference/gguf_from_llama2c.py --model "$work/b-tied.bin" --type q4_1 \
  -o "$corpus/gguf/llama-b-tied-q4_1" >/dev/null

python3 - "$work" "$corpus" <<'PY'
import json, os, struct, sys
work, corpus = sys.argv[1], sys.argv[2]

# classify: model + trailer.
sentence = b"a gorgeous, witty, seductive movie"
for name in sorted(os.listdir(f"{corpus}/validate")):
    model = open(f"{corpus}/validate/{name}", "rb").read()
    stem = name[: -len(".tfm")]
    open(f"{corpus}/classify/{stem}-text", "wb").write(model + b"\x00" + sentence)
    ids = [2, 17, 200, 301, 45, 3]  # [CLS] ... [SEP] in the shrunk vocabulary
    raw = b"".join(struct.pack("<H", i) for i in ids)
    open(f"{corpus}/classify/{stem}-ids", "wb").write(model + b"\x07" + raw)

# tokenize: variant byte, output length, text.
texts = [l.encode() for l in open("tests/fixtures/sentences.txt", encoding="utf-8").read().splitlines() if l]
for path, every in [("tests/fixtures/tokenizer/parity.jsonl", 60), ("tests/fixtures/tokenizer/parity_variants.jsonl", 40)]:
    for i, line in enumerate(open(path, encoding="utf-8")):
        if i % every == 0:
            texts.append(json.loads(line)["text"].encode())
texts.append(b"invalid \xff\xfe utf-8 \xc3")
variants = [0x0F, 0x0C, 0x1F, 0x08]
for i, text in enumerate(texts):
    out_len = [128, 16, 2, 5][i % 4]
    open(f"{corpus}/tokenize/text-{i:03}", "wb").write(bytes([variants[i % 4], out_len]) + text)

# tokenize, bit 7: the tokenizer sections of the model files, raw.
for name in ["cls-int8.tfm", "mean-f16.tfm"]:
    model = open(f"{corpus}/validate/{name}", "rb").read()
    offset, length = struct.unpack_from("<II", model, 28)
    open(f"{corpus}/tokenize/section-{name[:-4]}", "wb").write(bytes([0x80, 16]) + model[offset : offset + length])

# bytebpe: variant byte, output length, text (every 60th golden, the four variants).
for i, line in enumerate(open("tests/fixtures/bytebpe/goldens.jsonl", encoding="utf-8")):
    if i % 60 == 0:
        text = json.loads(line)["text"].encode()
        out_len = [255, 8, 0, 64][(i // 60) % 4]
        open(f"{corpus}/bytebpe/text-{i:04}", "wb").write(bytes([(i // 60) % 4, out_len]) + text)
open(f"{corpus}/bytebpe/invalid-utf8", "wb").write(bytes([1, 64]) + b"ok \xff\xfe <|im_end|> \xc3")

# convert_read: flags, length-prefixed parts, safetensors last.
def part(b):
    return struct.pack("<I", len(b)) + b
for m in ["cls", "mean"]:
    d = f"{work}/{m}"
    read = lambda p: open(os.path.join(d, p), "rb").read()
    flags = 0x02
    body = part(read("config.json")) + part(read("vocab.txt")) + part(read("tokenizer_config.json"))
    if os.path.exists(os.path.join(d, "1_Pooling/config.json")):
        flags |= 0x04
        body += part(read("1_Pooling/config.json"))
    open(f"{corpus}/convert_read/{m}", "wb").write(bytes([flags]) + body + read("model.safetensors"))

# generate: decoder + request trailer (context, flags, temperature, top-k, top-p,
# seed u32, steps, prompt); a bare file runs the target's default request.
def request(ctx, flags, temperature, top_k, top_p, seed, steps, prompt):
    return bytes([ctx, flags, temperature, top_k, top_p]) + struct.pack("<I", seed) + bytes([steps]) + prompt
requests = {
    # Greedy from BOS and a word, on to 32 tokens, past the end of the context.
    "greedy": request(15, 0x01, 0, 0, 0, 0, 32, b"Once"),
    # Sampling with top-k and top-p through the int8 entry points; every refused
    # call (short and misaligned arenas, out-of-range ids).
    "refusals": request(15, 0x3D, 51, 40, 230, 7, 20, b"\xe5\xa5\xbd\xf0\x9f\x98\x80\xff\xc3<0x41>"),
    # Top-p alone at a high temperature, no BOS, the whole prompt; an empty prompt.
    "top-p": request(3, 0x02, 160, 0, 128, 123456789, 9, b"The cat"),
    "empty": request(0, 0x04, 64, 1, 0, 1, 4, b""),
}
# One request per model, in turn (each request meets an int8 and a float model).
labels = list(requests)
for i, name in enumerate(sorted(os.listdir(f"{work}/decoders"))):
    model = open(f"{work}/decoders/{name}", "rb").read()
    label = labels[i % len(labels)]
    open(f"{corpus}/generate/{name[: -len('.tfm')]}-{label}", "wb").write(model + requests[label])
PY
cp tests/fixtures/gguf/types.gguf "$corpus/gguf/types"
python3 - "$corpus/gguf/v2-other-types" <<'PY'
import struct, sys
def s(x):
    b = x.encode()
    return struct.pack("<Q", len(b)) + b
kvs = [
    (s("general.alignment") + struct.pack("<II", 4, 16)),
    (s("a.u8") + struct.pack("<IB", 0, 200)),
    (s("a.i64") + struct.pack("<Iq", 11, -5)),
    (s("a.f64") + struct.pack("<Id", 12, 0.5)),
    (s("a.bools") + struct.pack("<IIQ", 9, 7, 3) + bytes([1, 0, 1])),
    (s("a.i16s") + struct.pack("<IIQ", 9, 3, 2) + struct.pack("<hh", -2, 300)),
]
infos = [
    s("k") + struct.pack("<IQQIQ", 2, 256, 1, 12, 0),
    s("q") + struct.pack("<IQIQ", 1, 32, 2, 144),
]
out = b"GGUF" + struct.pack("<IQQ", 2, len(infos), len(kvs)) + b"".join(kvs) + b"".join(infos)
out += bytes(-len(out) % 16)
out += bytes(range(144)) + struct.pack("<e", 0.25) + bytes(range(16))
open(sys.argv[1], "wb").write(out)
PY
du -sh "$corpus"/*
