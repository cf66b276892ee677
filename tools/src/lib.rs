//! Host-side library of the tinyformer tool: checkpoint reading (Hugging Face BERT,
//! llama2.c), conversion and quantization, running models; the `tinyformer` binary is
//! a thin front over it.

pub mod bench;
pub mod bert_names;
pub mod checkpoint;
pub mod convert;
pub mod decoder;
pub mod generate;
pub mod gptq;
pub mod llama2c;
pub mod llama2c_tokenizer;
pub mod run;
