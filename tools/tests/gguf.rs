//! The GGUF reader: dequantization parity with the reference `gguf` Python package on
//! the committed fixture (tests/fixtures/gguf/, written by
//! tools/reference/gguf_fixture.py), and hostile files crafted with a small builder,
//! each refused with an error naming the key or tensor, truncated at every byte, and
//! with huge counts under an address-space cap.
//!
//! Test names start with `gguf` so that `cargo test -p tinyformer-cli gguf` selects
//! them.

mod common;

use common::gguf::*;
use std::fs;
use std::path::{Path, PathBuf};
use tinyformer_cli::gguf::{Array, GgmlType, Gguf, GgufFile, Value, ValueType, MAX_ALIGNMENT};

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/gguf")
}

/// A small valid file: a u32, a string array, an f32 array; an F32 tensor [4] at 0
/// and a Q8_0 tensor [32] (d = 0.5, q = i - 16) at 32.
fn small() -> Builder {
    let mut q8 = half::f16::from_f32(0.5).to_le_bytes().to_vec();
    q8.extend((0..32).map(|i| (i - 16i8) as u8));
    let f: Vec<u8> = [1.0f32, -2.0, 0.5, 8.0]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    Builder::new()
        .kv_u32("llama.block_count", 2)
        .kv_strs("tokenizer.ggml.tokens", &["<s>", "a", "\u{e9}"])
        .kv_array(
            "tokenizer.ggml.scores",
            F32,
            2,
            &[0, 0, 128, 63, 0, 0, 0, 64],
        )
        .tensor("norm", &[4], T_F32, 0)
        .tensor("wq", &[32], T_Q8_0, 32)
        .data(&f)
        .data(&[0; 16])
        .data(&q8)
}

fn err(bytes: &[u8]) -> String {
    match Gguf::parse(bytes) {
        Ok(_) => panic!("parsed"),
        Err(e) => format!("{e:#}"),
    }
}

#[track_caller]
fn assert_err(bytes: &[u8], expected: &[&str]) {
    let message = err(bytes);
    for e in expected {
        assert!(message.contains(e), "`{e}` not in: {message}");
    }
}

#[test]
fn gguf_small_file_reads() {
    let bytes = small().bytes();
    let g = Gguf::parse(&bytes).unwrap();
    assert_eq!((g.version(), g.alignment(), g.data_offset()), (3, 32, 256));
    assert_eq!(g.u32("llama.block_count").unwrap(), 2);
    assert_eq!(
        g.str_array("tokenizer.ggml.tokens").unwrap(),
        ["<s>", "a", "\u{e9}"]
    );
    assert_eq!(g.f32_array("tokenizer.ggml.scores").unwrap(), [1.0, 2.0]);
    assert_eq!(g.metadata().count(), 3);
    let norm = g.tensor("norm").unwrap();
    assert_eq!(
        (
            norm.dims(),
            norm.ggml_type,
            norm.n_elements,
            norm.range.clone()
        ),
        (&[4u64][..], GgmlType::F32, 4, 256..272)
    );
    assert_eq!(g.dequantize("norm").unwrap(), [1.0, -2.0, 0.5, 8.0]);
    let wq = g.tensor("wq").unwrap();
    assert_eq!((wq.offset, wq.range.clone()), (32, 288..322));
    let expected: Vec<f32> = (0..32).map(|i| (i - 16) as f32 * 0.5).collect();
    assert_eq!(wq.dequantize().unwrap(), expected);
    assert_eq!(g.tensors().len(), 2);
    assert!(format!("{:#}", g.tensor("wk").unwrap_err()).contains("no tensor `wk`"));
}

#[test]
fn gguf_fixture_matches_the_reference_bit_for_bit() {
    let file = GgufFile::open(&fixture_dir().join("types.gguf")).unwrap();
    let g = file.parse().unwrap();
    assert_eq!((g.version(), g.alignment()), (3, 64));
    assert_eq!(g.str("general.architecture").unwrap(), "tinyformer-test");
    assert_eq!(g.str("general.name").unwrap(), "types fixture");
    assert_eq!(g.u32("test.u32").unwrap(), 7);
    assert_eq!(g.get("test.i32"), Some(&Value::I32(-3)));
    assert_eq!(g.f32("test.f32").unwrap(), 0.25);
    assert_eq!(g.get("test.bool"), Some(&Value::Bool(true)));
    assert_eq!(g.get("test.u64"), Some(&Value::U64(1 << 40)));
    assert_eq!(
        g.str_array("tokenizer.ggml.tokens").unwrap(),
        ["<unk>", "<s>", "</s>", "\u{2581}the", "\u{e9}t\u{e9}", ""]
    );
    assert_eq!(
        g.f32_array("tokenizer.ggml.scores").unwrap(),
        [0.0, -1.5, 2.25, -1000.0, 3.5e-3, 1.0]
    );
    assert_eq!(
        g.i32_array("tokenizer.ggml.token_type").unwrap(),
        [2, 3, 3, 1, 1, 1]
    );
    assert_eq!(g.tensors().len(), 15);
    let mut seen = Vec::new();
    for t in g.tensors() {
        // The name is `<type>_<numpy shape>`; GGUF dims are the shape reversed.
        let (ty, shape) = t.name.rsplit_once('_').unwrap();
        let mut dims: Vec<u64> = shape.split('x').map(|d| d.parse().unwrap()).collect();
        dims.reverse();
        assert_eq!(t.dims(), dims, "{}", t.name);
        assert_eq!(t.ggml_type.name().to_lowercase(), ty, "{}", t.name);
        assert_eq!(t.offset % 64, 0);
        let expected = fs::read(fixture_dir().join(format!("{}.f32", t.name))).unwrap();
        let expected: Vec<u32> = expected
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        let got: Vec<u32> = g
            .dequantize(t.name)
            .unwrap()
            .iter()
            .map(|x| x.to_bits())
            .collect();
        assert_eq!(got, expected, "{}", t.name);
        seen.push(t.ggml_type);
    }
    for ty in [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::Q8_0,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
    ] {
        assert_eq!(seen.iter().filter(|&&t| t == ty).count(), 3, "{ty}");
    }
}

/// The fuzz seed written by `fuzz/make_corpus.sh` (checked there against the `gguf`
/// package's reader): version 2, alignment 16, the value types the fixture lacks, and a
/// Q4_K tensor that parses but does not dequantize.
#[test]
fn gguf_v2_seed_with_other_types_reads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/gguf/v2-other-types");
    let file = GgufFile::open(&path).unwrap();
    let g = file.parse().unwrap();
    assert_eq!((g.version(), g.alignment(), g.data_offset()), (2, 16, 272));
    assert_eq!(g.get("a.u8"), Some(&Value::U8(200)));
    assert_eq!(g.u32("a.u8").unwrap(), 200);
    assert_eq!(g.get("a.i64"), Some(&Value::I64(-5)));
    assert_eq!(g.get("a.f64"), Some(&Value::F64(0.5)));
    let Some(Value::Array(bools)) = g.get("a.bools") else {
        panic!("a.bools");
    };
    assert_eq!(
        bools.iter().collect::<Vec<_>>(),
        [Value::Bool(true), Value::Bool(false), Value::Bool(true)]
    );
    assert_eq!(g.i32_array("a.i16s").unwrap(), [-2, 300]);
    let k = g.tensor("k").unwrap();
    assert_eq!(
        (k.dims(), k.ggml_type, k.range.clone()),
        (&[256u64, 1][..], GgmlType::Q4_K, 272..416)
    );
    assert!(k.dequantize().is_err());
    // Q4_0, d = 0.25, byte j = j: element j is (j & 15) - 8, element 16 + j is (j >> 4) - 8.
    let q = g.dequantize("q").unwrap();
    let expected: Vec<f32> = (0..16u8)
        .map(|j| (j & 15) as f32 - 8.0)
        .chain((0..16u8).map(|j| (j >> 4) as f32 - 8.0))
        .map(|x| x * 0.25)
        .collect();
    assert_eq!(q, expected);
}

#[test]
fn gguf_truncation_at_every_byte_is_an_error() {
    for (what, bytes) in [
        ("small", small().bytes()),
        (
            "fixture",
            fs::read(fixture_dir().join("types.gguf")).unwrap(),
        ),
    ] {
        // Padding after the last tensor (the reference writer pads it) is not
        // needed: cutting it leaves a valid file.
        let end = Gguf::parse(&bytes)
            .unwrap()
            .tensors()
            .iter()
            .map(|t| t.range.end)
            .max()
            .unwrap();
        for len in 0..bytes.len() {
            let parsed = Gguf::parse(&bytes[..len]);
            assert_eq!(parsed.is_ok(), len >= end, "{what}: {len} bytes");
        }
    }
}

#[test]
fn gguf_bad_magic_and_versions() {
    let mut b = small();
    b.magic = *b"GGML";
    assert_err(&b.bytes(), &["not a GGUF file: magic [47, 47, 4d, 4c]"]);
    for v in [1, 4, 0x0300_0000] {
        let mut b = small();
        b.version = v;
        assert_err(
            &b.bytes(),
            &[&format!("GGUF version {v} is not supported (2 and 3 are)")],
        );
    }
    let mut b = small();
    b.version = 0x0300_0000;
    assert_err(&b.bytes(), &["big-endian"]);
    let mut b = small();
    b.version = 2;
    assert!(Gguf::parse(&b.bytes()).is_ok());
    assert_err(b"GG", &["shorter than the magic"]);
}

#[test]
fn gguf_huge_counts_and_lengths_are_refused_before_allocating() {
    let mut b = Builder::new();
    b.tensor_count = Some(1 << 60);
    assert_err(
        &b.bytes(),
        &["tensor count 1152921504606846976 needs more bytes than any file has"],
    );
    let mut b = Builder::new();
    b.tensor_count = Some(2);
    assert_err(
        &b.bytes(),
        &["tensor count 2 needs at least 64 bytes, 0 left"],
    );
    // The tensor count is checked again against what the metadata left.
    let mut b = Builder::new().kv("k", STR, &string(&"x".repeat(60)));
    b.tensor_count = Some(2);
    assert_err(
        &b.bytes(),
        &["tensor count 2 needs at least 64 bytes, 0 left"],
    );
    let mut b = Builder::new();
    b.kv_count = Some(1 << 60);
    assert_err(&b.bytes(), &["metadata count 1152921504606846976 needs"]);
    // A key of length 2^62.
    let mut huge_key = Builder::new().kv("k", U8, &[0]);
    huge_key.kvs[..8].copy_from_slice(&(1u64 << 62).to_le_bytes());
    assert_err(
        &huge_key.bytes(),
        &[
            "metadata entry 0 of 1: key",
            "string length 4611686018427387904 at offset 24 exceeds the 6 bytes left",
        ],
    );
    // A string value of length 2^62.
    let b = Builder::new().kv("name", STR, &(1u64 << 62).to_le_bytes());
    assert_err(
        &b.bytes(),
        &["metadata `name`: string length 4611686018427387904"],
    );
    // Arrays of 2^60 strings and u32, and of 2^62 u64 (the byte count overflows).
    let b = Builder::new().kv_array("tokenizer.ggml.tokens", STR, 1 << 60, &[]);
    assert_err(
        &b.bytes(),
        &["metadata `tokenizer.ggml.tokens`: array of strings: count 1152921504606846976 needs"],
    );
    let b = Builder::new().kv_array("a", U32, 1 << 60, &[0; 8]);
    assert_err(
        &b.bytes(),
        &["metadata `a`: array of u32: count 1152921504606846976 needs at least 4611686018427387904 bytes, 8 left"],
    );
    let b = Builder::new().kv_array("a", U64, 1 << 62, &[]);
    assert_err(
        &b.bytes(),
        &["array of u64: count 4611686018427387904 needs more bytes than any file has"],
    );
    // A string inside an array longer than the file.
    let mut elements = (1u64 << 40).to_le_bytes().to_vec();
    elements.extend([0; 8]);
    let b = Builder::new().kv_array("t", STR, 2, &elements);
    assert_err(
        &b.bytes(),
        &["metadata `t`: element 0: string length 1099511627776"],
    );
}

#[test]
fn gguf_bad_values_are_refused() {
    let b = Builder::new().kv_array("nested", ARRAY, 1, &[]);
    assert_err(&b.bytes(), &["metadata `nested`: nested arrays"]);
    let b = Builder::new().kv("k", 13, &[0]);
    assert_err(&b.bytes(), &["metadata `k`: unknown value type 13"]);
    let b = Builder::new().kv_array("k", 99, 0, &[]);
    assert_err(
        &b.bytes(),
        &["metadata `k`: array element type: unknown value type 99"],
    );
    let b = Builder::new().kv("flag", BOOL, &[2]);
    assert_err(
        &b.bytes(),
        &["metadata `flag`: bool value [2] is not 0 or 1"],
    );
    let b = Builder::new().kv_array("flags", BOOL, 3, &[0, 1, 7]);
    assert_err(&b.bytes(), &["metadata `flags`: bool element 2 is 7"]);
    let mut bad_utf8 = 2u64.to_le_bytes().to_vec();
    bad_utf8.extend([0xc3, 0x28]);
    let b = Builder::new().kv("s", STR, &bad_utf8);
    assert_err(
        &b.bytes(),
        &["metadata `s`: string at offset 45 is not UTF-8"],
    );
    let b = Builder::new().kv_u32("k", 1).kv_u32("k", 2);
    assert_err(&b.bytes(), &["metadata `k`: duplicate key"]);
}

#[test]
fn gguf_typed_getters_name_the_key_and_the_types() {
    let tokens_u32 = [1u32, 2]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect::<Vec<_>>();
    let bytes = Builder::new()
        .kv_array("tokenizer.ggml.tokens", U32, 2, &tokens_u32)
        .kv("as_i32", I32, &7i32.to_le_bytes())
        .kv("as_u64", U64, &7u64.to_le_bytes())
        .kv("negative", I32, &(-1i32).to_le_bytes())
        .kv("big", U64, &(1u64 << 40).to_le_bytes())
        .kv("name", STR, &string("x"))
        .kv_array(
            "ints",
            U64,
            2,
            &[5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0],
        )
        .kv_array("empty", STR, 0, &[])
        .bytes();
    let g = Gguf::parse(&bytes).unwrap();
    let e = |r: anyhow::Error| format!("{r:#}");
    assert_eq!(
        e(g.str_array("tokenizer.ggml.tokens").unwrap_err()),
        "metadata `tokenizer.ggml.tokens`: expected array of string, found array of u32"
    );
    assert_eq!(
        e(g.f32_array("tokenizer.ggml.tokens").unwrap_err()),
        "metadata `tokenizer.ggml.tokens`: expected array of f32, found array of u32"
    );
    assert_eq!(g.i32_array("tokenizer.ggml.tokens").unwrap(), [1, 2]);
    assert_eq!(
        e(g.i32_array("ints").unwrap_err()),
        "metadata `ints`: element 1 is 4294967296 (u64), out of range for i32"
    );
    assert_eq!(
        e(g.i32_array("name").unwrap_err()),
        "metadata `name`: expected array of i32, found string"
    );
    assert_eq!(
        e(g.i32_array("empty").unwrap_err()),
        "metadata `empty`: expected array of i32, found array of string"
    );
    assert!(g.str_array("empty").unwrap().is_empty());
    assert_eq!(g.u32("as_i32").unwrap(), 7);
    assert_eq!(g.u32("as_u64").unwrap(), 7);
    assert_eq!(
        e(g.u32("negative").unwrap_err()),
        "metadata `negative`: -1 (i32) is out of range for u32"
    );
    assert_eq!(
        e(g.u32("big").unwrap_err()),
        "metadata `big`: 1099511627776 (u64) is out of range for u32"
    );
    assert_eq!(
        e(g.u32("name").unwrap_err()),
        "metadata `name`: expected u32, found string"
    );
    assert_eq!(
        e(g.f32("as_i32").unwrap_err()),
        "metadata `as_i32`: expected f32, found i32"
    );
    assert_eq!(
        e(g.str("as_u64").unwrap_err()),
        "metadata `as_u64`: expected string, found u64"
    );
    assert_eq!(
        e(g.u32("llama.block_count").unwrap_err()),
        "missing metadata key `llama.block_count`"
    );
    assert_eq!(g.get("llama.block_count"), None);
    // Arrays read element by element through the generic API too.
    let Some(Value::Array(a @ Array::Fixed { .. })) = g.get("ints") else {
        panic!("ints");
    };
    assert_eq!((a.len(), a.element_type()), (2, ValueType::U64));
    assert_eq!(
        a.iter().collect::<Vec<_>>(),
        [Value::U64(5), Value::U64(1 << 32)]
    );
    assert_eq!(a.get(2), None);
}

#[test]
fn gguf_bad_alignments_are_refused() {
    for a in [0u32, 3, 48, (MAX_ALIGNMENT * 2) as u32] {
        let b = Builder::new().kv_u32("general.alignment", a);
        assert_err(
            &b.bytes(),
            &[&format!(
                "metadata `general.alignment`: {a} is not a power of two from 1 to 1048576"
            )],
        );
    }
    let b = Builder::new().kv("general.alignment", STR, &string("32"));
    assert_err(
        &b.bytes(),
        &["metadata `general.alignment`: expected u32, found string"],
    );
    // Alignment 1: tensors may start anywhere, the data right after the infos.
    let mut b = Builder::new()
        .kv_u32("general.alignment", 1)
        .tensor("t", &[1], T_F32, 3)
        .data(&[0, 0, 0])
        .data(&2.5f32.to_le_bytes());
    b.pad_to = 1;
    let bytes = b.bytes();
    let g = Gguf::parse(&bytes).unwrap();
    assert_eq!(g.dequantize("t").unwrap(), [2.5]);
}

#[test]
fn gguf_bad_tensor_infos_name_the_tensor() {
    let one = |name: &str, dims: &[u64], ty: u32, offset: u64, data: usize| {
        Builder::new()
            .tensor(name, dims, ty, offset)
            .data(&vec![0; data])
            .bytes()
    };
    assert_err(
        &one("t0", &[], T_F32, 0, 4),
        &["tensor `t0`: n_dims 0 is not from 1 to 4"],
    );
    assert_err(
        &one("t5", &[1; 5], T_F32, 0, 4),
        &["tensor `t5`: n_dims 5 is not from 1 to 4"],
    );
    assert_err(&one("z", &[4, 0], T_F32, 0, 4), &["tensor `z`: dim 1 is 0"]);
    assert_err(
        &one("big", &[1 << 32, 1 << 32], T_F32, 0, 4),
        &["tensor `big`: dims [4294967296, 4294967296]: the element count overflows u64"],
    );
    assert_err(
        &one("bytes", &[1 << 62, 1], T_F32, 0, 4),
        &["tensor `bytes`: dims [4611686018427387904, 1]: the byte size of F32 overflows u64"],
    );
    assert_err(
        &one("row", &[33, 2], T_Q8_0, 0, 136),
        &["tensor `row`: dims [33, 2]: row length 33 is not a multiple of Q8_0's block size 32"],
    );
    assert_err(
        &one("k", &[32], 4, 0, 64),
        &["tensor `k`: unknown ggml type 4"],
    );
    assert_err(
        &one("past", &[8], T_F32, 0, 28),
        &["tensor `past`: F32 [8] at offset 0: bytes 0..32 run past the end of the data section (28 bytes)"],
    );
    assert_err(
        &one("far", &[1], T_F32, 1 << 40, 64),
        &["tensor `far`: F32 [1] at offset 1099511627776: bytes 1099511627776..1099511627780 run past"],
    );
    assert_err(
        &one("wrap", &[16], T_F32, u64::MAX - 31, 64),
        &["tensor `wrap`: offset 18446744073709551584 + 64 bytes overflows u64"],
    );
    assert_err(
        &one("odd", &[1], T_F32, 4, 64),
        &["tensor `odd`: offset 4 is not a multiple of the alignment 32"],
    );
    let b = Builder::new()
        .tensor("same", &[1], T_F32, 0)
        .tensor("same", &[1], T_F32, 32)
        .data(&[0; 36]);
    assert_err(&b.bytes(), &["tensor `same`: duplicate tensor name"]);
    let mut b = Builder::new().tensor("cut", &[1], T_F32, 0);
    b.infos.truncate(b.infos.len() - 3);
    b.pad_to = 1;
    assert_err(&b.bytes(), &["tensor `cut`: offset: truncated"]);
}

#[test]
fn gguf_unsupported_types_parse_but_do_not_dequantize() {
    let bytes = Builder::new()
        .tensor("blk.0.ffn_down.weight", &[256, 2], T_Q4_K, 0)
        .data(&[0; 288])
        .bytes();
    let g = Gguf::parse(&bytes).unwrap();
    let t = g.tensor("blk.0.ffn_down.weight").unwrap();
    assert_eq!((t.ggml_type, t.data.len()), (GgmlType::Q4_K, 288));
    assert_eq!(
        format!("{:#}", g.dequantize("blk.0.ffn_down.weight").unwrap_err()),
        "tensor `blk.0.ffn_down.weight`: dequantizing Q4_K is not supported (F32, F16, Q8_0, Q4_0 and Q4_1 are)"
    );
}

#[test]
fn gguf_file_errors_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.gguf");
    let message = format!("{:#}", GgufFile::open(&missing).unwrap_err());
    assert!(
        message.contains(&format!("{}: cannot open", missing.display())),
        "{message}"
    );
    let message = format!("{:#}", GgufFile::open(dir.path()).unwrap_err());
    assert!(
        message.contains(&format!("{}: not a regular file", dir.path().display())),
        "{message}"
    );
    for (name, bytes) in [
        ("empty.gguf", Vec::new()),
        ("v1.gguf", {
            let mut b = small();
            b.version = 1;
            b.bytes()
        }),
    ] {
        let path = dir.path().join(name);
        fs::write(&path, bytes).unwrap();
        let file = GgufFile::open(&path).unwrap();
        assert_eq!(file.path(), path);
        let message = format!("{:#}", file.parse().unwrap_err());
        assert!(
            message.starts_with(&format!("{}: ", path.display())),
            "{message}"
        );
    }
}

/// Opens, parses and reads everything of a file: every metadata value, every tensor
/// of a supported type dequantized.
fn read_everything(path: &Path) -> anyhow::Result<()> {
    let file = GgufFile::open(path)?;
    let g = file.parse()?;
    for (_, v) in g.metadata() {
        if let Value::Array(a) = v {
            a.iter().for_each(drop);
        }
    }
    for t in g.tensors() {
        t.dequantize()?;
    }
    Ok(())
}

/// Under an address-space cap of 1 GiB (`ulimit -v`), hostile counts are refused with
/// their error rather than an allocation failure: this test re-runs itself in a child
/// process under the cap, reading one file, for each case.
#[test]
fn gguf_hostile_counts_within_an_address_space_cap() {
    if common::child_read(read_everything) {
        return;
    }
    // Each case pads the file with 1 MiB, so the counts are refused for their size
    // and not merely because the file ends.
    let mib = vec![0u8; 1 << 20];
    let mut tensors = Builder::new().data(&mib);
    tensors.tensor_count = Some(1 << 60);
    let mut kvs = Builder::new().data(&mib);
    kvs.kv_count = Some(1 << 60);
    let mut tokens = Builder::new().kv_array("tokenizer.ggml.tokens", STR, 1 << 60, &mib);
    tokens.data = Vec::new();
    let mut long_string = Builder::new().kv("general.name", STR, &(1u64 << 62).to_le_bytes());
    long_string.kvs.extend_from_slice(&mib);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "tensor count 2^60",
            tensors.bytes(),
            "tensor count 1152921504606846976 needs more bytes than any file has",
        ),
        (
            "metadata count 2^60",
            kvs.bytes(),
            "metadata count 1152921504606846976 needs at least 14987979559889010688 bytes, 1048576 left",
        ),
        (
            "string array count 2^60",
            tokens.bytes(),
            "metadata `tokenizer.ggml.tokens`: array of strings: count 1152921504606846976 needs at least 9223372036854775808 bytes, 1048576 left",
        ),
        (
            "string length 2^62",
            long_string.bytes(),
            "metadata `general.name`: string length 4611686018427387904 at offset 48 exceeds the 1048576 bytes left",
        ),
        // Control: the fixture reads under the same cap.
        (
            "fixture",
            fs::read(fixture_dir().join("types.gguf")).unwrap(),
            "child: read ok",
        ),
    ];
    common::reads_under_address_cap(
        "gguf_hostile_counts_within_an_address_space_cap",
        "model.gguf",
        cases,
    );
}
