//! Host-side library of the tinyformer tool: checkpoint reading (Hugging Face BERT and
//! Llama, llama2.c, GGUF), conversion and quantization, running models, and one module
//! per command (`inspect`, `eval`, `encoder` for tokenize/embed/classify, `generate`
//! for the decoder commands, `bench`); the `tinyformer` binary is a thin `clap` front
//! over it.
//!
//! Every `--json` output is a `#[derive(Serialize)]` record next to its command. The
//! records declare their fields in alphabetical order, the key order the output has
//! always had (it was once built from sorted `serde_json` maps); `bench` keeps its
//! own order. Floats the runtime holds as f32 are widened to f64 before they are
//! written, as before (`0.99334716796875`, not `0.99334717`).

/// `println!` that returns the write error instead of panicking (a closed pipe, as with
/// `| head`, ends the program quietly).
#[macro_export]
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($t)*)?;
    }};
}

pub mod bench;
pub mod bert_names;
pub mod checkpoint;
pub mod convert;
pub mod decoder;
pub mod encoder;
pub mod eval;
pub mod generate;
pub mod gguf;
pub mod gguf_llama;
pub mod gptq;
pub mod hf_llama;
pub mod inspect;
pub mod le;
pub mod llama2c;
pub mod llama2c_tokenizer;
pub mod run;
