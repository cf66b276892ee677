//! Enables the Cortex-M DSP int8 kernels (`cfg(tinyformer_dsp)`) exactly when the target,
//! as configured, has the DSP extension.
//!
//! `cfg(target_feature = "dsp")` cannot be used: Arm target features are unstable, so
//! stable rustc never sets it (nor lists it in `CARGO_CFG_TARGET_FEATURE`), even for
//! `thumbv7em-*` whose CPUs (Cortex-M4/M7) always have the extension. And the target
//! name alone is not enough: a Cortex-M33 (`thumbv8m.main-*`) may or may not have it.
//! So on Arm the script asks the compiler: it builds a one-instruction probe (`SMLAD`)
//! for the target with the build's flags; the assembler accepts it only when the DSP
//! extension is enabled (`thumbv7em-*`, or `-C target-cpu=cortex-m33`, or
//! `-C target-feature=+dsp`), and refuses it otherwise ("instruction requires: dsp").
//!
//! Also sets `cfg(tinyformer_break_kernel_for_test)` when the environment variable
//! `TINYFORMER_BREAK_KERNEL_FOR_TEST` is `1`: the Cortex-M DSP matrix-vector kernel then
//! computes a wrong value **on purpose**. Only `tools/firmware-check.sh` sets it, to
//! show that the boot self-test (`Model::self_test`) catches a broken kernel; never set
//! it anywhere else.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(tinyformer_dsp)");
    println!("cargo::rustc-check-cfg=cfg(tinyformer_break_kernel_for_test)");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=TINYFORMER_BREAK_KERNEL_FOR_TEST");
    if std::env::var("TINYFORMER_BREAK_KERNEL_FOR_TEST").is_ok_and(|v| v == "1") {
        println!("cargo::rustc-cfg=tinyformer_break_kernel_for_test");
    }
    let arm = std::env::var("CARGO_CFG_TARGET_ARCH").is_ok_and(|a| a == "arm");
    let features = std::env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    if arm && (features.split(',').any(|f| f == "dsp") || target_has_dsp()) {
        println!("cargo::rustc-cfg=tinyformer_dsp");
    }
}

/// Whether the compiler assembles a DSP instruction for this target and these flags.
/// Falls back to the target name (`thumbv7em-*` always has DSP) when the probe cannot
/// be built for another reason (e.g. no prebuilt `core`, as with `-Zbuild-std`).
fn target_has_dsp() -> bool {
    let target = std::env::var("TARGET").unwrap_or_default();
    let by_name = target.starts_with("thumbv7em");
    let (Some(rustc), Some(out_dir)) = (std::env::var_os("RUSTC"), std::env::var_os("OUT_DIR"))
    else {
        return by_name;
    };
    let dir = PathBuf::from(out_dir);
    let source = dir.join("dsp_probe.rs");
    let probe = "#![no_std]\n\
        pub fn smlad(a: u32, b: u32, acc: i32) -> i32 {\n\
            let out;\n\
            unsafe { core::arch::asm!(\"smlad {0}, {1}, {2}, {3}\", lateout(reg) out, \
                in(reg) a, in(reg) b, in(reg) acc) };\n\
            out\n\
        }\n";
    if std::fs::write(&source, probe).is_err() {
        return by_name;
    }
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    let output = Command::new(rustc)
        .args([
            "--edition=2021",
            "--crate-type=lib",
            "--emit=obj",
            "--target",
            &target,
        ])
        .arg("-o")
        .arg(dir.join("dsp_probe.o"))
        .args(flags.split('\x1f').filter(|f| !f.is_empty()))
        .arg(&source)
        .output();
    match output {
        Ok(output) if output.status.success() => true,
        Ok(output) if String::from_utf8_lossy(&output.stderr).contains("instruction requires") => {
            false
        }
        _ => by_name,
    }
}
