//! The README's Rust snippets, built for a microcontroller.
//!
//! `build.rs` copies every code block of `README.md` that rustdoc compiles into a
//! module here, byte for byte as rustdoc compiles it, and `cargo build` in this
//! directory builds them for `thumbv7em-none-eabihf` (CI does). On the host the same
//! blocks compile and run as doctests of the core (`cargo test -p tinyformer --doc`).
#![no_std]
// The snippets are programs (`fn main`) that nothing here calls.
#![allow(dead_code)]

include!(concat!(env!("OUT_DIR"), "/readme.rs"));
