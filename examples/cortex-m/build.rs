//! Adds the defmt linker script when the `defmt` feature is on (it places the
//! interned format strings, which the host decoder reads from the ELF).
fn main() {
    if std::env::var_os("CARGO_FEATURE_DEFMT").is_some() {
        println!("cargo:rustc-link-arg=-Tdefmt.x");
    }
}
