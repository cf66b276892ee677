//! The commands that run an encoder on texts: `tokenize` (decoders handed on to
//! [`crate::generate`]), `embed` and `classify`. Each prints one line per input, in
//! input order (JSON Lines with `--json`; see [`crate::run::for_each_text`]).

use anyhow::{anyhow, bail, Result};
use serde::Serialize;
use std::collections::BTreeMap;

use crate::run::{
    argmax, for_each_text, read_texts, tokenize_input, tokenize_input_windows, ModelBytes, Runner,
};

// Fields in alphabetical order: the key order the JSON output has always had.

/// A `tokenize --json` line.
#[derive(Debug, Serialize)]
pub struct TokensRecord<'a> {
    /// Token ids as the device sees them (`[CLS]`/`[SEP]` or BOS included).
    pub ids: &'a [u32],
    pub text: &'a str,
}

/// An `embed --json` line.
#[derive(Debug, Serialize)]
pub struct EmbeddingRecord<'a> {
    /// The pooled embedding (or a classifier's logits), each f32 widened to f64.
    pub embedding: Vec<f64>,
    pub text: &'a str,
}

/// A `classify --json` line.
#[derive(Debug, Serialize)]
pub struct ClassificationRecord<'a> {
    /// The most probable label (the lowest index on ties).
    pub label: String,
    /// Its probability.
    pub score: f64,
    /// Probability per label.
    pub scores: BTreeMap<String, f64>,
    /// int8 models: the probabilities in Q15 exactly as the device computes them,
    /// label order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scores_q15: Option<Vec<i32>>,
    pub text: &'a str,
    /// With `--windows N` above 1: how many windows of the text were read and averaged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub windows: Option<usize>,
}

/// `tokenize`: the ids the device would see and the word pieces (text: `ids<TAB>pieces`).
pub fn cmd_tokenize(
    bytes: &ModelBytes,
    texts: &[String],
    special_tokens: bool,
    json: bool,
) -> Result<()> {
    if bytes.is_decoder()? {
        return crate::generate::cmd_tokenize_decoder(bytes, texts, special_tokens, json);
    }
    let model = bytes.model()?;
    for_each_text(&read_texts(texts)?, json, false, |input, text| {
        let tokens = tokenize_input(&model, input, text)?;
        if json {
            let record = TokensRecord {
                ids: &tokens.ids,
                text,
            };
            return Ok(serde_json::to_string(&record)?);
        }
        let ids: Vec<String> = tokens.ids.iter().map(u32::to_string).collect();
        let pieces: Vec<&str> = tokens
            .ids
            .iter()
            .map(|&id| model.tokenizer().token(id).unwrap_or("?"))
            .collect();
        Ok(format!("{}\t{}", ids.join(" "), pieces.join(" ")))
    })
}

/// Token ids written as `101,7592,102` (commas or spaces).
pub fn parse_ids(s: &str) -> Result<Vec<u32>> {
    s.split([',', ' '])
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.parse::<u32>()
                .map_err(|_| anyhow!("`{t}` is not a token id"))
        })
        .collect()
}

/// What `embed` and `classify` print.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Report {
    /// The output vector: `text<TAB>values` (6 decimals).
    Embedding,
    /// Label and probability: `label<TAB>probability<TAB>text`.
    Classification,
}

/// `embed` and `classify`: runs the model on each text (or, with `ids`, on the token
/// ids each input spells) and prints the [`Report`]. A classifier reads a text longer
/// than its context in up to `windows` windows and averages their logits
/// (`Runner::run_windows`); `embed` takes 1.
pub fn cmd_run(
    bytes: &ModelBytes,
    texts: &[String],
    ids: bool,
    json: bool,
    report: Report,
    windows: usize,
) -> Result<()> {
    let model = bytes.model()?;
    if report == Report::Classification && model.config().num_labels == 0 {
        bail!(
            "{}: model has no classifier head (num_labels 0); use `embed`",
            bytes.name()
        );
    }
    let mut runner = Runner::new(model)?;
    for_each_text(&read_texts(texts)?, json, false, |input, text| {
        let token_ids = if ids {
            vec![parse_ids(text)?]
        } else {
            let windows = tokenize_input_windows(&runner.model, input, text, windows)?;
            windows.into_iter().map(|w| w.ids).collect()
        };
        let out = runner.run_windows(&token_ids)?;
        if report == Report::Embedding {
            if json {
                let record = EmbeddingRecord {
                    embedding: out.values.iter().map(|&v| f64::from(v)).collect(),
                    text,
                };
                return Ok(serde_json::to_string(&record)?);
            }
            let values: Vec<String> = out.values.iter().map(|v| format!("{v:.6}")).collect();
            return Ok(format!("{text}\t{}", values.join(" ")));
        }
        let best = argmax(&out.probabilities);
        let label = runner.label(best);
        if !json {
            return Ok(format!("{label}\t{:.4}\t{text}", out.probabilities[best]));
        }
        let record = ClassificationRecord {
            score: f64::from(out.probabilities[best]),
            scores: (out.probabilities.iter().enumerate())
                .map(|(k, &p)| (runner.label(k), f64::from(p)))
                .collect(),
            label,
            scores_q15: out.probabilities_q15,
            text,
            windows: (windows > 1).then_some(token_ids.len()),
        };
        Ok(serde_json::to_string(&record)?)
    })
}
