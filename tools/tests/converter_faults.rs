//! Converter faults: an interrupted or failing write never leaves a partial model under
//! the output name; unwritable and full output locations and hostile safetensors files
//! give clear errors naming the file, within a bounded address space (no allocation
//! sized by a hostile header).

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Instant;
use tinyformer::format::writer::AlignedBuf;
use tinyformer::format::ModelFile;
use tinyformer_cli::convert::{write_atomically, write_atomically_with};

mod common;
use common::{copy_checkpoint, fixture, stderr};

/// Address-space limit for the CLI in the hostile-input tests: a conversion of the
/// fixture fits comfortably, an allocation sized by a hostile header would not.
const ADDRESS_SPACE_KIB: u64 = 1 << 20;

/// `tinyformer convert <dir> -o <out> --dtype f32`, run through `sh` so that resource
/// limits (`ulimit` lines in `limits`) apply to the CLI only.
fn convert_limited(dir: &Path, out: &Path, limits: &str) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(format!("{limits}\nexec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_tinyformer"))
        .args(["convert", dir.to_str().unwrap(), "-o"])
        .arg(out)
        .args(["--dtype", "f32"])
        .output()
        .unwrap()
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn is_valid_model(bytes: &[u8]) -> bool {
    ModelFile::from_bytes(AlignedBuf::from_bytes(bytes).as_bytes()).is_ok()
}

/// A writer that accepts `budget` bytes, then fails like a full disk.
struct FullDisk<W> {
    file: W,
    budget: usize,
}

impl<W: Write> Write for FullDisk<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.budget == 0 {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "no space left on device",
            ));
        }
        let n = buf.len().min(self.budget);
        self.budget -= n;
        self.file.write(&buf[..n])
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[test]
fn failing_write_keeps_the_previous_file_and_removes_the_partial_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("model.tfm");
    let new = vec![0xA5u8; 100_000];
    for previous in [None, Some(b"previous complete model".to_vec())] {
        if let Some(p) = &previous {
            write_atomically(&out, p, &[]).unwrap();
        }
        let err = write_atomically_with(&out, &[], |file| {
            // Half the payload reaches the disk, then the disk is full.
            let mut full = FullDisk {
                file,
                budget: new.len() / 2,
            };
            full.write_all(&new)
        })
        .unwrap_err();
        let message = format!("{err:#}");
        assert!(
            message.contains(out.to_str().unwrap()) && message.contains("write failed"),
            "{message}"
        );
        assert!(message.contains("no space left"), "{message}");
        match &previous {
            Some(p) => {
                assert_eq!(&fs::read(&out).unwrap(), p);
                assert_eq!(names_in(dir.path()), ["model.tfm"]);
            }
            None => assert!(names_in(dir.path()).is_empty()),
        }
    }
}

/// A real write error from the kernel: the CLI under a file-size limit (`ulimit -f`,
/// which applies to root too, with `SIGXFSZ` ignored so the write returns `EFBIG`)
/// reports the output file and leaves the previous one in place.
#[test]
fn file_size_limit_during_write_is_reported_and_harmless() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("model.tfm");
    fs::write(&out, b"previous complete model").unwrap();
    let o = convert_limited(
        &fixture("tiny-bert-cls"),
        &out,
        "trap '' XFSZ\nulimit -f 64",
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains(out.to_str().unwrap()) && err.contains("write failed"),
        "{err}"
    );
    assert_eq!(fs::read(&out).unwrap(), b"previous complete model");
    assert_eq!(names_in(dir.path()), ["model.tfm"]);
}

/// Killing `tinyformer convert` at points spread over its run (SIGKILL: no clean-up
/// code runs) leaves the output name absent or holding a complete, valid model; at
/// most a `.model.tfm.*.partial` file remains beside it.
#[test]
fn killed_conversion_never_leaves_a_partial_output() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("model.tfm");
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_tinyformer"))
            .args(["convert", fixture("tiny-bert-cls").to_str().unwrap(), "-o"])
            .arg(&out)
            .args(["--dtype", "f32"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let start = Instant::now();
    assert!(spawn().wait().unwrap().success());
    let full_run = start.elapsed();
    let mut kills = 0;
    for step in 0..12u32 {
        fs::remove_file(&out).ok();
        let mut child = spawn();
        std::thread::sleep(full_run * step / 12);
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            kills += 1;
        }
        child.wait().unwrap();
        for name in names_in(dir.path()) {
            if name == "model.tfm" {
                assert!(is_valid_model(&fs::read(&out).unwrap()), "step {step}");
            } else {
                assert!(
                    name.starts_with(".model.tfm.") && name.ends_with(".partial"),
                    "step {step}: unexpected {name}"
                );
                fs::remove_file(dir.path().join(name)).unwrap();
            }
        }
    }
    assert!(kills > 0, "no run was interrupted (full run {full_run:?})");
}

/// Output locations that cannot hold a file: under a regular file, in a missing
/// directory, and (when the permission bits bind, i.e. not as root) in a read-only
/// directory.
#[test]
fn unwritable_output_locations_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    fs::write(&file, b"x").unwrap();
    let missing = dir.path().join("missing");
    let mut cases = vec![file.join("model.tfm"), missing.join("model.tfm")];

    let read_only = dir.path().join("read-only");
    fs::create_dir(&read_only).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&read_only, fs::Permissions::from_mode(0o555)).unwrap();
    let binds = fs::write(read_only.join("probe"), b"").is_err();
    if binds {
        cases.push(read_only.join("model.tfm"));
    } else {
        eprintln!("running as root: the read-only directory case cannot fail, skipped");
    }

    for out in &cases {
        let err = format!("{:#}", write_atomically(out, b"model", &[]).unwrap_err());
        assert!(
            err.contains(out.to_str().unwrap()) && err.contains("cannot create a temporary file"),
            "{err}"
        );
        assert!(!out.exists());
    }
    // The CLI exits with status 1 and the same message.
    let o = convert_limited(&fixture("tiny-bert-cls"), &cases[0], "");
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains(cases[0].to_str().unwrap()),
        "{}",
        stderr(&o)
    );
    fs::set_permissions(&read_only, fs::Permissions::from_mode(0o755)).unwrap();
}

// ---------------------------------------------------------------------------------
// Hostile safetensors files.

/// A safetensors file from a raw JSON header and data section.
fn raw_safetensors(header: &str, data: &[u8]) -> Vec<u8> {
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    bytes
}

/// The fixture's tensors with `edit` applied to the named one, re-serialised.
fn edited_fixture(
    name: &str,
    edit: impl FnOnce(&mut (safetensors::Dtype, Vec<usize>, Vec<u8>)),
) -> Vec<u8> {
    let bytes = fs::read(fixture("tiny-bert-cls").join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: HashMap<String, (safetensors::Dtype, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, (v.dtype(), v.shape().to_vec(), v.data().to_vec())))
        .collect();
    edit(tensors.get_mut(name).expect("fixture tensor"));
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(n, (dtype, shape, data))| {
            let view = safetensors::tensor::TensorView::new(*dtype, shape.clone(), data).unwrap();
            (n.clone(), view)
        })
        .collect();
    safetensors::serialize(views, &None).unwrap()
}

fn fixture_weight_name(suffix: &str) -> String {
    let bytes = fs::read(fixture("tiny-bert-cls").join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.names()
        .into_iter()
        .find(|n| n.ends_with(suffix))
        .expect("fixture tensor")
        .clone()
}

#[test]
fn hostile_safetensors_give_clear_errors_without_large_allocations() {
    let limit = format!("ulimit -v {ADDRESS_SPACE_KIB}");
    // Control: the limit leaves room for a normal conversion, so a refusal below is the
    // converter's, not the limit's.
    let tmp = tempfile::tempdir().unwrap();
    let good_out = tmp.path().join("good.tfm");
    let o = convert_limited(&fixture("tiny-bert-cls"), &good_out, &limit);
    assert!(o.status.success(), "{}", stderr(&o));

    let query = fixture_weight_name("layer.0.attention.self.query.weight");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "header length 2^60",
            {
                let mut b = (1u64 << 60).to_le_bytes().to_vec();
                b.extend_from_slice(b"{}");
                b
            },
            "HeaderTooLarge",
        ),
        (
            "header length past the end",
            {
                let mut b = 1_000_000u64.to_le_bytes().to_vec();
                b.extend_from_slice(b"{\"a\":1}");
                b
            },
            "invalid safetensors",
        ),
        (
            "offsets past the end",
            raw_safetensors(
                r#"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16000000000]}}"#,
                &[0; 16],
            ),
            "invalid safetensors",
        ),
        (
            "overlapping tensors",
            raw_safetensors(
                r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}}"#,
                &[0; 24],
            ),
            "InvalidOffset",
        ),
        (
            "shape product overflows",
            raw_safetensors(
                r#"{"w":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,16]}}"#,
                &[0; 16],
            ),
            "ValidationOverflow",
        ),
        (
            "weight stored as I32",
            edited_fixture(&query, |t| t.0 = safetensors::Dtype::I32),
            "has dtype I32; weights must be F32, F16, BF16 or F64",
        ),
        (
            "weight with a wrong shape",
            edited_fixture(&query, |t| {
                t.1 = vec![t.1[0] / 2, t.1[1] * 2];
            }),
            "config.json implies [64, 64]",
        ),
        (
            "truncated file",
            fs::read(fixture("tiny-bert-cls").join("model.safetensors")).unwrap()[..5000].to_vec(),
            "invalid safetensors",
        ),
    ];
    for (what, bytes, expected) in cases {
        let dir = copy_checkpoint("tiny-bert-cls");
        let st = dir.path().join("model.safetensors");
        fs::write(&st, bytes).unwrap();
        let out = dir.path().join("out.tfm");
        let o = convert_limited(dir.path(), &out, &limit);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{what}: {err}");
        // The error names the checkpoint directory and the file: `DIR: model.safetensors: ...`.
        assert!(
            err.contains(dir.path().to_str().unwrap())
                && err.contains("model.safetensors")
                && err.contains(expected),
            "{what}: {err}"
        );
        assert!(!out.exists(), "{what}");
    }
}

/// A `config.json` claiming a huge model is checked against the tensors actually present
/// before anything is sized from it.
#[test]
fn huge_config_dimensions_are_refused_without_allocating() {
    let dir = copy_checkpoint("tiny-bert-cls");
    let config = dir.path().join("config.json");
    let text = fs::read_to_string(&config).unwrap();
    fs::write(
        &config,
        text.replace("\"vocab_size\": 1536", "\"vocab_size\": 4294967295"),
    )
    .unwrap();
    let out = dir.path().join("out.tfm");
    let o = convert_limited(dir.path(), &out, &format!("ulimit -v {ADDRESS_SPACE_KIB}"));
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("4294967295"), "{err}");
    assert!(!out.exists());
}
