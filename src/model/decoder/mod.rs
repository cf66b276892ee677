//! The Llama-family causal decoder: next-token sampling (the model and its state follow).
pub mod sample;
