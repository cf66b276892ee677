//! Enables the Cortex-M DSP int8 kernels (`cfg(tinyformer_dsp)`) on ARMv7E-M targets.
//!
//! `cfg(target_feature = "dsp")` cannot be used: Arm target features are unstable, so
//! stable rustc never sets it, even for `thumbv7em-*` whose CPUs (Cortex-M4/M7) always
//! have the DSP extension. Other cores with the extension (e.g. a Cortex-M33 built for
//! `thumbv8m.main-*`) can opt in with `RUSTFLAGS="--cfg tinyformer_dsp"`.
//!
//! Also sets `cfg(tinyformer_break_kernel_for_test)` when the environment variable
//! `TINYFORMER_BREAK_KERNEL_FOR_TEST` is `1`: the Cortex-M DSP matrix-vector kernel then
//! computes a wrong value **on purpose**. Only `tools/firmware-check.sh` sets it, to
//! show that the boot self-test (`Model::self_test`) catches a broken kernel; never set
//! it anywhere else.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(tinyformer_dsp)");
    println!("cargo::rustc-check-cfg=cfg(tinyformer_break_kernel_for_test)");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=TINYFORMER_BREAK_KERNEL_FOR_TEST");
    if std::env::var("TINYFORMER_BREAK_KERNEL_FOR_TEST").is_ok_and(|v| v == "1") {
        println!("cargo::rustc-cfg=tinyformer_break_kernel_for_test");
    }
    let target = std::env::var("TARGET").unwrap_or_default();
    let features = std::env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    let arm = std::env::var("CARGO_CFG_TARGET_ARCH").is_ok_and(|a| a == "arm");
    if arm && (target.starts_with("thumbv7em") || features.split(',').any(|f| f == "dsp")) {
        println!("cargo::rustc-cfg=tinyformer_dsp");
    }
}
