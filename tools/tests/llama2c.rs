//! The llama2.c checkpoint reader: the real stories260K checkpoint, the tensor layout on
//! a crafted file whose every weight is its own index, and hostile files (bad header
//! fields, wrong lengths, non-finite weights, huge sizes under an address-space cap),
//! each refused with an error naming the file and the field or tensor.
//!
//! Test names start with `llama2c` so that `cargo test -p tinyformer-cli llama2c`
//! selects them.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use tinyformer_cli::llama2c::{
    read_llama2c, Llama2cCheckpoint, Llama2cConfig, Llama2cError, HEADER_LEN,
};

fn stories260k() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/stories260K/stories260K.bin")
}

/// A header from the seven fields in file order:
/// `dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len`.
fn header(fields: [i32; 7]) -> Vec<u8> {
    fields.iter().flat_map(|f| f.to_le_bytes()).collect()
}

/// Number of f32 after the header, counted here independently of the reader, in
/// `run.c`'s `memory_map_weights` order.
fn payload_floats(fields: [i32; 7]) -> usize {
    let [dim, hidden, layers, heads, kv_heads, vocab, seq] = fields.map(|f| f as usize);
    let unshared = fields[5] < 0;
    let vocab = if unshared {
        (fields[5] as i64).unsigned_abs() as usize
    } else {
        vocab
    };
    let head = dim / heads;
    let kv_dim = kv_heads * head;
    vocab * dim
        + layers * (dim + dim * dim + 2 * kv_dim * dim + dim * dim + dim + 3 * hidden * dim)
        + dim
        + 2 * seq * head / 2
        + if unshared { vocab * dim } else { 0 }
}

/// A complete checkpoint whose weight `i` (counted after the header) is `i as f32`.
fn indexed_checkpoint(fields: [i32; 7]) -> Vec<u8> {
    let mut bytes = header(fields);
    for i in 0..payload_floats(fields) {
        bytes.extend_from_slice(&(i as f32).to_le_bytes());
    }
    bytes
}

/// dim 8, hidden 12, 2 layers, 2 heads of 4, 1 kv head (kv_dim 4), vocab 5, seq 4.
const SMALL: [i32; 7] = [8, 12, 2, 2, 1, 5, 4];

/// Writes `bytes` to a temporary file and reads it; the error as `{:#}` (as the CLI
/// prints it) and as the typed error in the chain.
fn read_err(bytes: &[u8]) -> (String, Option<Llama2cError>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.bin");
    fs::write(&path, bytes).unwrap();
    let err = read_llama2c(&path).unwrap_err();
    let message = format!("{err:#}");
    assert!(
        message.starts_with(path.to_str().unwrap()),
        "the error names the file: {message}"
    );
    (message, err.downcast_ref::<Llama2cError>().copied())
}

fn read_ok(bytes: &[u8]) -> Llama2cCheckpoint {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.bin");
    fs::write(&path, bytes).unwrap();
    let ckpt = read_llama2c(&path).unwrap();
    let from_bytes = Llama2cCheckpoint::from_bytes(bytes).unwrap();
    assert_eq!(ckpt.config, from_bytes.config);
    assert_eq!(ckpt.token_embedding(), from_bytes.token_embedding());
    ckpt
}

/// The published stories260K checkpoint: its header, the tensor sizes, and weights at
/// known places compared bit for bit with values read independently by
/// (from the repository root)
/// `python3 -c "import struct; b=open('models/stories260K/stories260K.bin','rb').read(); print([hex(struct.unpack_from('<I', b, 28 + 4 * i)[0]) for i in (0, 32767, 32967, 41477, 57663, 204927, 259968)])"`
/// which prints
/// `['0xbe96e950', '0xbed91acd', '0x3f879857', '0xbdbcacf9', '0x3dc3e14b', '0xbb65d38b', '0x401d54ef']`.
/// The float indices are, in `memory_map_weights` order (vocab 512, dim 64, 5 layers,
/// kv_dim 32, hidden 172): token_embedding[0][0]; token_embedding[511][63];
/// rms_att layer 3 [7] (32768 + 3*64 + 7); wq layer 2 row 3 column 5
/// (33088 + 2*4096 + 3*64 + 5); wk layer 1 row 31 column 63 (53568 + 2048 + 31*64 + 63);
/// w2 layer 4 row 63 column 171 (149888 + 4*11008 + 63*172 + 171); rms_final[0]
/// (259968).
#[test]
fn llama2c_reads_stories260k() {
    let ckpt = read_llama2c(&stories260k()).unwrap();
    let c = ckpt.config;
    assert_eq!(
        c,
        Llama2cConfig {
            dim: 64,
            hidden_dim: 172,
            layers: 5,
            heads: 8,
            kv_heads: 4,
            vocab_size: 512,
            seq_len: 512,
            shared_classifier: true,
        }
    );
    assert_eq!((c.head_size(), c.kv_dim()), (8, 32));
    assert_eq!(c.file_len(), Some(1_056_540));
    assert_eq!(ckpt.token_embedding().len(), 512 * 64);
    assert_eq!(ckpt.layers().len(), 5);
    for layer in ckpt.layers() {
        assert_eq!(layer.rms_att.len(), 64);
        assert_eq!(layer.wq.len(), 64 * 64);
        assert_eq!(layer.wk.len(), 32 * 64);
        assert_eq!(layer.wv.len(), 32 * 64);
        assert_eq!(layer.wo.len(), 64 * 64);
        assert_eq!(layer.rms_ffn.len(), 64);
        assert_eq!(layer.w1.len(), 172 * 64);
        assert_eq!(layer.w2.len(), 64 * 172);
        assert_eq!(layer.w3.len(), 172 * 64);
    }
    assert_eq!(ckpt.rms_final().len(), 64);
    assert!(ckpt.wcls().is_none());
    assert_eq!(ckpt.classifier(), ckpt.token_embedding());

    let bits = |x: f32| x.to_bits();
    assert_eq!(bits(ckpt.token_embedding()[0]), 0xbe96e950);
    assert_eq!(bits(ckpt.token_embedding()[511 * 64 + 63]), 0xbed91acd);
    assert_eq!(bits(ckpt.layer(3).rms_att[7]), 0x3f879857);
    assert_eq!(bits(ckpt.layer(2).wq[3 * 64 + 5]), 0xbdbcacf9);
    assert_eq!(bits(ckpt.layer(1).wk[31 * 64 + 63]), 0x3dc3e14b);
    assert_eq!(bits(ckpt.layer(4).w2[63 * 172 + 171]), 0xbb65d38b);
    assert_eq!(bits(ckpt.rms_final()[0]), 0x401d54ef);

    let bytes = fs::read(stories260k()).unwrap();
    let from_bytes = Llama2cCheckpoint::from_bytes(&bytes).unwrap();
    assert_eq!(from_bytes.config, c);
    for (a, b) in ckpt.layers().zip(from_bytes.layers()) {
        assert_eq!(a.w1, b.w1);
    }
}

/// Every tensor starts where `memory_map_weights` puts it, per layer, and the legacy
/// RoPE tables are skipped: on a file whose weight `i` is `i`, each slice is a run of
/// consecutive indices starting at the expected offset.
#[test]
fn llama2c_tensor_layout_follows_run_c() {
    for unshared in [false, true] {
        let mut fields = SMALL;
        if unshared {
            fields[5] = -fields[5];
        }
        let ckpt = read_ok(&indexed_checkpoint(fields));
        let (dim, hidden, kv_dim, vocab) = (8, 12, 4, 5);
        let mut next = 0usize;
        // Checks that `slice` is the next `len` weights of the file.
        let expect = |next: &mut usize, slice: &[f32], len: usize, what: &str| {
            assert_eq!(slice.len(), len, "{what}");
            for (k, &x) in slice.iter().enumerate() {
                assert_eq!(x, (*next + k) as f32, "{what}[{k}]");
            }
            *next += len;
        };
        expect(
            &mut next,
            ckpt.token_embedding(),
            vocab * dim,
            "token_embedding",
        );
        // Each kind holds all layers back to back.
        let layers: Vec<_> = ckpt.layers().collect();
        for l in &layers {
            expect(&mut next, l.rms_att, dim, "rms_att");
        }
        for l in &layers {
            expect(&mut next, l.wq, dim * dim, "wq");
        }
        for l in &layers {
            expect(&mut next, l.wk, kv_dim * dim, "wk");
        }
        for l in &layers {
            expect(&mut next, l.wv, kv_dim * dim, "wv");
        }
        for l in &layers {
            expect(&mut next, l.wo, dim * dim, "wo");
        }
        for l in &layers {
            expect(&mut next, l.rms_ffn, dim, "rms_ffn");
        }
        for l in &layers {
            expect(&mut next, l.w1, hidden * dim, "w1");
        }
        for l in &layers {
            expect(&mut next, l.w2, dim * hidden, "w2");
        }
        for l in &layers {
            expect(&mut next, l.w3, hidden * dim, "w3");
        }
        expect(&mut next, ckpt.rms_final(), dim, "rms_final");
        next += 2 * 4 * (4 / 2); // freq_cis_real, freq_cis_imag: [seq_len][head_size / 2]
        match ckpt.wcls() {
            Some(wcls) => {
                assert!(unshared);
                expect(&mut next, wcls, vocab * dim, "wcls");
                assert_eq!(ckpt.classifier(), wcls);
            }
            None => {
                assert!(!unshared);
                assert_eq!(ckpt.classifier(), ckpt.token_embedding());
            }
        }
        assert_eq!(next, payload_floats(fields));
    }
}

/// Every header check: the error names the field (`field`) and the offending value.
#[test]
fn llama2c_bad_header_fields_are_named() {
    let with = |i: usize, v: i32| {
        let mut f = SMALL;
        f[i] = v;
        f
    };
    let cases: Vec<([i32; 7], &str)> = vec![
        (with(0, 0), "header field `dim`: 0 is outside 1..=4096"),
        (with(0, -8), "header field `dim`: -8 is outside 1..=4096"),
        (
            with(0, 4097),
            "header field `dim`: 4097 is outside 1..=4096",
        ),
        (
            with(1, 0),
            "header field `hidden_dim`: 0 is outside 1..=16384",
        ),
        (with(1, -1), "header field `hidden_dim`: -1 is outside"),
        (
            with(1, 16385),
            "header field `hidden_dim`: 16385 is outside",
        ),
        (with(2, 0), "header field `n_layers`: 0 is outside 1..=64"),
        (with(2, 65), "header field `n_layers`: 65 is outside 1..=64"),
        (with(3, 0), "header field `n_heads`: 0 is outside 1..=8"),
        (with(3, 9), "header field `n_heads`: 9 is outside 1..=8"),
        (with(4, 0), "header field `n_kv_heads`: 0 is outside 1..=2"),
        (with(4, 3), "header field `n_kv_heads`: 3 is outside 1..=2"),
        (
            with(5, 0),
            "header field `vocab_size`: 0 is outside 1..=1048576",
        ),
        (
            with(5, -(1 << 20) - 1),
            "header field `vocab_size`: -1048577 is outside 1..=1048576 in magnitude",
        ),
        (
            with(5, i32::MIN),
            "header field `vocab_size`: -2147483648 is outside",
        ),
        (with(6, 0), "header field `seq_len`: 0 is outside 1..=8192"),
        (
            with(6, 8193),
            "header field `seq_len`: 8193 is outside 1..=8192",
        ),
        (with(6, -4), "header field `seq_len`: -4 is outside"),
        (
            [12, 12, 1, 8, 1, 5, 4],
            "header field `n_heads`: 8 does not divide `dim` (12)",
        ),
        (
            [24, 12, 1, 6, 4, 5, 4],
            "header field `n_kv_heads`: 4 does not divide `n_heads` (6)",
        ),
        (
            [12, 12, 1, 4, 1, 5, 4],
            "header fields `dim` / `n_heads`: head size 3 is odd",
        ),
        (
            [8, 12, 1, 8, 1, 5, 4],
            "header fields `dim` / `n_heads`: head size 1 is odd",
        ),
        (
            [2048, 12, 1, 2, 1, 5, 4],
            "header field `dim / n_heads`: 1024 is outside 2..=512",
        ),
        (
            [i32::MAX; 7],
            "header field `dim`: 2147483647 is outside 1..=4096",
        ),
    ];
    for (fields, expected) in cases {
        // Followed by as many bytes as a valid file of the same header would have
        // (or none), so the header check is what refuses it.
        let mut bytes = header(fields);
        bytes.extend(std::iter::repeat_n(0, 4 * payload_floats(SMALL)));
        let (message, err) = read_err(&bytes);
        assert!(message.contains(expected), "{fields:?}: {message}");
        assert!(
            matches!(
                err,
                Some(
                    Llama2cError::OutOfRange { .. }
                        | Llama2cError::DoesNotDivide { .. }
                        | Llama2cError::OddHeadSize { .. }
                )
            ),
            "{fields:?}: {err:?}"
        );
        // The in-memory reader says the same.
        let direct = Llama2cCheckpoint::from_bytes(&bytes).unwrap_err();
        assert_eq!(Some(direct), err);
    }
}

#[test]
fn llama2c_truncated_header_is_refused() {
    let full = indexed_checkpoint(SMALL);
    for len in [0, 1, 4, HEADER_LEN - 1] {
        let (message, err) = read_err(&full[..len]);
        assert_eq!(err, Some(Llama2cError::TruncatedHeader { len: len as u64 }));
        assert!(
            message.contains(&format!(
                "file is {len} bytes, shorter than the 28-byte llama2.c header"
            )),
            "{message}"
        );
    }
}

/// Truncated payload and trailing bytes, with a shared and an unshared classifier;
/// an unshared header (negative `vocab_size`) without the `wcls` bytes is truncated.
#[test]
fn llama2c_wrong_lengths_are_refused() {
    let shared = indexed_checkpoint(SMALL);
    let expected = shared.len();
    let mut trailing = shared.clone();
    trailing.extend_from_slice(b"garbage");
    let mut unshared_fields = SMALL;
    unshared_fields[5] = -5;
    let mut unshared_without_wcls = shared.clone();
    unshared_without_wcls[..HEADER_LEN].copy_from_slice(&header(unshared_fields));
    let unshared_len = expected + 4 * 5 * 8;

    let cases: Vec<(Vec<u8>, String)> = vec![
        (
            shared[..expected - 1].to_vec(),
            format!(
                "truncated: file is {} bytes, the header implies {expected} (shared classifier)",
                expected - 1
            ),
        ),
        (
            shared[..HEADER_LEN].to_vec(),
            format!("truncated: file is 28 bytes, the header implies {expected}"),
        ),
        (
            trailing,
            format!(
                "trailing bytes: file is {} bytes, the header implies {expected}",
                expected + 7
            ),
        ),
        (
            unshared_without_wcls,
            format!(
                "truncated: file is {expected} bytes, the header implies {unshared_len} \
                 (unshared classifier `wcls` (negative `vocab_size`))"
            ),
        ),
    ];
    for (bytes, want) in cases {
        let (message, err) = read_err(&bytes);
        assert!(message.contains(&want), "{message}\nwant: {want}");
        assert!(matches!(err, Some(Llama2cError::LengthMismatch { .. })));
    }
    // With its classifier bytes the unshared file reads.
    let ckpt = read_ok(&indexed_checkpoint(unshared_fields));
    assert!(!ckpt.config.shared_classifier);
    assert_eq!(ckpt.wcls().map(<[f32]>::len), Some(5 * 8));
}

/// NaN and infinities are reported with the tensor, the layer and the element.
#[test]
fn llama2c_non_finite_weights_are_named() {
    let good = indexed_checkpoint(SMALL);
    // Float offsets (after the header) of: wv layer 1 element 5, rms_final element 2,
    // token_embedding element 0, w2 layer 0 row 3 column 7.
    let (dim, hidden, layers, kv_dim, vocab) = (8usize, 12, 2, 4, 5);
    let wq = vocab * dim + layers * dim;
    let wv = wq + layers * dim * dim + layers * kv_dim * dim;
    let w1 = wv + layers * kv_dim * dim + layers * dim * dim + layers * dim;
    let w2 = w1 + layers * hidden * dim;
    let rms_final = w2 + 2 * layers * hidden * dim;
    let cases = [
        (
            wv + kv_dim * dim + 5,
            f32::NAN,
            "tensor `wv` (layer 1): non-finite value NaN at element 5 (row 0, column 5)",
        ),
        (
            rms_final + 2,
            f32::INFINITY,
            "tensor `rms_final_weight`: non-finite value inf at element 2 (row 0, column 2)",
        ),
        (
            0,
            f32::NEG_INFINITY,
            "tensor `token_embedding_table`: non-finite value -inf at element 0",
        ),
        (
            w2 + 3 * hidden + 7,
            f32::NAN,
            "tensor `w2` (layer 0): non-finite value NaN at element 43 (row 3, column 7)",
        ),
    ];
    for (at, value, expected) in cases {
        let mut bytes = good.clone();
        let byte = HEADER_LEN + 4 * at;
        bytes[byte..byte + 4].copy_from_slice(&value.to_le_bytes());
        let (message, err) = read_err(&bytes);
        assert!(message.contains(expected), "{message}\nwant: {expected}");
        assert!(matches!(err, Some(Llama2cError::NonFinite { .. })));
    }
    // The legacy RoPE tables are not read, so a NaN there is harmless.
    let mut bytes = good.clone();
    let rope = HEADER_LEN + 4 * (rms_final + dim);
    bytes[rope..rope + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    read_ok(&bytes);
}

/// The implied length is computed with checked arithmetic: fields no header can pass
/// (the checks bound them first) overflow `u64`, and the largest header the limits
/// allow implies a length that is compared, not allocated.
#[test]
fn llama2c_huge_sizes_do_not_overflow() {
    let huge = Llama2cConfig {
        dim: u32::MAX,
        hidden_dim: u32::MAX,
        layers: u32::MAX,
        heads: 1,
        kv_heads: 1,
        vocab_size: u32::MAX,
        seq_len: u32::MAX,
        shared_classifier: false,
    };
    assert_eq!(huge.file_len(), None);
    assert_eq!(Llama2cConfig { heads: 0, ..huge }.file_len(), None);
    // The largest header within the limits: ~80 GiB, stated, not allocated.
    let (message, err) = read_err(&header(LARGEST));
    assert!(
        message.contains("truncated: file is 28 bytes, the header implies "),
        "{message}"
    );
    let Some(Llama2cError::LengthMismatch { expected, .. }) = err else {
        panic!("{err:?}")
    };
    assert!(expected > 80_000_000_000, "{expected}");
}

/// The largest header the limits allow (unshared classifier).
const LARGEST: [i32; 7] = [4096, 16384, 64, 8, 1, -(1 << 20), 8192];

/// Under an address-space cap of 1 GiB (`ulimit -v`), hostile headers are refused
/// with their error rather than an allocation failure: this test re-runs itself in a
/// child process under the cap, reading one file, for each case.
#[test]
fn llama2c_hostile_headers_within_an_address_space_cap() {
    if common::child_read(|path| read_llama2c(path).map(drop)) {
        return;
    }
    // The implied sizes of `LARGEST` and `[i32::MAX; 7]` would not fit under the cap.
    let mut largest_plus_some = header(LARGEST);
    largest_plus_some.extend(std::iter::repeat_n(0, 1 << 20));
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "largest header",
            header(LARGEST),
            "truncated: file is 28 bytes",
        ),
        (
            "largest header, 1 MiB of weights",
            largest_plus_some,
            "truncated: file is 1048604 bytes",
        ),
        (
            "all fields i32::MAX",
            header([i32::MAX; 7]),
            "header field `dim`: 2147483647",
        ),
        (
            "all fields i32::MIN",
            header([i32::MIN; 7]),
            "header field `dim`: -2147483648",
        ),
        // Control: a real checkpoint reads under the same cap.
        (
            "stories260K",
            fs::read(stories260k()).unwrap(),
            "child: read ok",
        ),
    ];
    common::reads_under_address_cap(
        "llama2c_hostile_headers_within_an_address_space_cap",
        "model.bin",
        cases,
    );
}

#[test]
fn llama2c_missing_file_and_directory_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.bin");
    let message = format!("{:#}", read_llama2c(&missing).unwrap_err());
    assert!(
        message.contains(&format!("{}: cannot open", missing.display())),
        "{message}"
    );
    let message = format!("{:#}", read_llama2c(dir.path()).unwrap_err());
    assert!(
        message.contains(&format!("{}: not a regular file", dir.path().display())),
        "{message}"
    );
}
