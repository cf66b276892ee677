//! `eval`: a classifier's accuracy, per-class scores and confusion on a labelled TSV
//! file (`label<TAB>text` per line), optionally with the label agreement of a second
//! model, as one [`Evaluation`] printed as text or as one JSON object.

use anyhow::{anyhow, bail, Result};
use serde::Serialize;
use std::path::Path;

use crate::run::{argmax, read_lines, tokenize_windows, windows_read, ModelBytes, Runner};

// Fields in alphabetical order: the key order the JSON output has always had.

/// What `eval --json` prints (one object).
#[derive(Debug, Serialize)]
pub struct Evaluation {
    pub accuracy: f64,
    /// Label agreement with the `--compare` model (`null` without one).
    pub agreement: Option<f64>,
    /// Examples whose word pieces are all `[UNK]`.
    pub all_unknown: usize,
    /// The `--compare` model file (`null` without one).
    pub compare: Option<String>,
    /// `confusion[gold][predicted]`, label order as `labels`.
    pub confusion: Vec<Vec<usize>>,
    pub data: String,
    /// Examples evaluated (skipped lines not included).
    pub examples: usize,
    pub labels: Vec<String>,
    pub model: String,
    pub per_class: Vec<ClassScores>,
    /// Lines reported and skipped (invalid UTF-8, an empty text).
    pub skipped: usize,
    /// Examples with word pieces beyond the windows read (`windows` x `max_seq`).
    pub truncated: usize,
    /// Windows of `max_seq` tokens read per text at most, logits averaged (1: the
    /// first `max_seq` tokens only).
    pub windows: usize,
}

/// Precision, recall and F1 of one label.
#[derive(Debug, Serialize)]
pub struct ClassScores {
    pub f1: f64,
    pub label: String,
    pub precision: f64,
    pub recall: f64,
    /// Examples with this gold label.
    pub support: usize,
}

/// Reads `data` and evaluates the classifier at `path` on it (and `compare` alongside).
/// A line with invalid UTF-8 or an empty text is reported on stderr and counted in
/// `skipped`; a line that does not fit the model's labels is an error: the file or the
/// model is the wrong one. Each text is read in up to `windows` windows
/// (`Runner::run_windows`).
pub fn evaluate(
    path: &Path,
    data: &Path,
    compare: Option<&Path>,
    windows: usize,
) -> Result<Evaluation> {
    let bytes = ModelBytes::open(path)?;
    let mut runner = Runner::new(bytes.model()?)?;
    let other_bytes = compare.map(ModelBytes::open).transpose()?;
    let mut other = match &other_bytes {
        Some(b) => Some(Runner::new(b.model()?)?),
        None => None,
    };
    let labels: Vec<String> = (0..runner.model.config().num_labels as usize)
        .map(|i| runner.label(i))
        .collect();
    if labels.is_empty() {
        bail!("{}: model has no classifier head", path.display());
    }
    let mut rows = Vec::new();
    let mut skipped = 0usize;
    for (n, line) in read_lines(data)?.into_iter().enumerate() {
        let at = format!("{}: line {}", data.display(), n + 1);
        let line = match line {
            Ok(line) => line,
            Err(e) => {
                eprintln!("error: {at}: {e}; skipped");
                skipped += 1;
                continue;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        let (label, text) = line
            .split_once('\t')
            .ok_or_else(|| anyhow!("{at}: expected `label<TAB>text`"))?;
        let gold = labels
            .iter()
            .position(|l| l == label)
            .ok_or_else(|| anyhow!("{at}: label `{label}` is not one of the model's {labels:?}"))?;
        if text.trim().is_empty() {
            eprintln!("error: {at}: the text is empty or whitespace only; skipped");
            skipped += 1;
            continue;
        }
        rows.push((gold, text.to_string()));
    }
    let k = labels.len();
    let mut confusion = vec![vec![0usize; k]; k];
    let (mut agree, mut truncated, mut unknown) = (0usize, 0usize, 0usize);
    let bar = crate::convert::progress_bar(true, rows.len() as u64, "evaluating");
    for (gold, text) in &rows {
        let read = |r: &mut Runner<'_>| -> Result<(usize, bool, bool)> {
            let tokens = tokenize_windows(&r.model, text, windows)?;
            let last = &tokens[tokens.len() - 1];
            let (cut, unknown) = (last.truncated, last.all_unknown);
            let ids: Vec<&[u32]> = tokens.iter().map(|t| t.ids.as_slice()).collect();
            Ok((argmax(&r.run_windows(&ids)?.probabilities), cut, unknown))
        };
        let (pred, cut, all_unknown) = read(&mut runner)?;
        truncated += usize::from(cut);
        unknown += usize::from(all_unknown);
        confusion[*gold][pred] += 1;
        if let Some(o) = other.as_mut() {
            agree += usize::from(read(o)?.0 == pred);
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let total = rows.len().max(1);
    let correct: usize = (0..k).map(|i| confusion[i][i]).sum();
    let ratio = |n: usize, of: usize| if of > 0 { n as f64 / of as f64 } else { 0.0 };
    let per_class = (0..k)
        .map(|i| {
            let predicted: usize = (0..k).map(|g| confusion[g][i]).sum();
            let actual: usize = confusion[i].iter().sum();
            let p = ratio(confusion[i][i], predicted);
            let r = ratio(confusion[i][i], actual);
            let f1 = if p + r > 0.0 {
                2.0 * p * r / (p + r)
            } else {
                0.0
            };
            ClassScores {
                f1,
                label: labels[i].clone(),
                precision: p,
                recall: r,
                support: actual,
            }
        })
        .collect();
    if truncated > 0 {
        let read = windows_read(windows);
        eprintln!(
            "warning: {truncated} texts were truncated to {read}the model's {} tokens",
            runner.model.config().max_seq
        );
    }
    if unknown > 0 {
        eprintln!(
            "warning: {unknown} texts are all [UNK] word pieces (the model's vocabulary covers none of them)"
        );
    }
    Ok(Evaluation {
        accuracy: correct as f64 / total as f64,
        agreement: other.as_ref().map(|_| agree as f64 / total as f64),
        all_unknown: unknown,
        compare: compare.map(|p| p.display().to_string()),
        confusion,
        data: data.display().to_string(),
        examples: rows.len(),
        labels,
        model: path.display().to_string(),
        per_class,
        skipped,
        truncated,
        windows,
    })
}

/// `eval`: prints the [`Evaluation`] as text, or as one JSON object with `json`; an
/// error (exit code 1) after printing if lines were skipped.
pub fn cmd_eval(
    path: &Path,
    data: &Path,
    compare: Option<&Path>,
    json: bool,
    windows: usize,
) -> Result<()> {
    let v = evaluate(path, data, compare, windows)?;
    if json {
        crate::out!("{}", serde_json::to_string(&v)?);
    } else {
        print_text(&v)?;
    }
    if v.skipped > 0 {
        bail!(
            "{}: {} line(s) reported above were skipped; the figures cover the other {}",
            v.data,
            v.skipped,
            v.examples
        );
    }
    Ok(())
}

fn print_text(v: &Evaluation) -> Result<()> {
    crate::out!(
        "{}: {} examples, accuracy {:.4}",
        v.data,
        v.examples,
        v.accuracy
    );
    crate::out!(
        "{:<16} {:>9} {:>9} {:>9} {:>8}",
        "label",
        "precision",
        "recall",
        "f1",
        "support"
    );
    for c in &v.per_class {
        crate::out!(
            "{:<16} {:>9.4} {:>9.4} {:>9.4} {:>8}",
            c.label,
            c.precision,
            c.recall,
            c.f1,
            c.support
        );
    }
    crate::out!(
        "confusion (rows: gold, columns: predicted; order {:?}):",
        v.labels
    );
    for row in &v.confusion {
        crate::out!(
            "  {}",
            row.iter().map(|n| format!("{n:>7}")).collect::<String>()
        );
    }
    if let (Some(a), Some(p)) = (v.agreement, &v.compare) {
        crate::out!("label agreement with {p}: {a:.4}");
    }
    Ok(())
}
