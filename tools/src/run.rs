//! Running models on the host: opening model files (memory-mapped), tokenizing text
//! with the model's own tokenizer, and running the forward pass.

use anyhow::{anyhow, bail, Context, Result};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use tinyformer::model::probabilities_q15;
use tinyformer::{Input, Model};

/// Model bytes: a read-only memory map (page aligned) or a `'static` embedded model.
pub enum ModelBytes {
    Mapped(memmap2::Mmap, PathBuf),
    Static(&'static [u8], &'static str),
}

impl ModelBytes {
    /// Maps a model file.
    pub fn open(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path)
            .with_context(|| format!("{}: cannot open", path.display()))?;
        // SAFETY: read-only mapping of a file the tool does not modify; another process
        // truncating it while mapped could fault, the accepted limit of mmap input.
        let map = unsafe { memmap2::Mmap::map(&file) }
            .with_context(|| format!("{}: cannot map", path.display()))?;
        Ok(Self::Mapped(map, path.to_path_buf()))
    }

    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Self::Mapped(m, _) => m,
            Self::Static(b, _) => b,
        }
    }

    /// Where the bytes come from, for messages.
    pub fn name(&self) -> String {
        match self {
            Self::Mapped(_, p) => p.display().to_string(),
            Self::Static(_, n) => (*n).to_string(),
        }
    }

    /// Validates and loads the model (on the process's `--threads`, [`set_threads`]).
    pub fn model(&self) -> Result<Model<'_>> {
        let model = Model::from_bytes(self.bytes()).map_err(|e| anyhow!("{}: {e}", self.name()))?;
        Ok(model.with_threads(threads()))
    }
}

/// Threads of the int8 encoder's forward pass for this process, 1 until
/// [`set_threads`].
static THREADS: AtomicUsize = AtomicUsize::new(1);

/// `--threads N`: every encoder loaded afterwards ([`ModelBytes::model`]) runs its
/// forward pass, and every decoder (`ModelBytes::decoder`) its int8 prefill's
/// projections, on the calling thread plus rayon's global pool of `N - 1` workers
/// (decoding steps: one thread).
pub fn set_threads(threads: u16) -> Result<()> {
    let threads = usize::from(threads.max(1));
    if threads > 1 {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads - 1)
            .build_global()
            .map_err(|e| anyhow!("--threads {threads}: {e}"))?;
    }
    THREADS.store(threads, Ordering::Relaxed);
    Ok(())
}

/// The process's `--threads` ([`set_threads`]; 1 before).
pub fn threads() -> usize {
    THREADS.load(Ordering::Relaxed)
}

/// Runs the model file's self-test (`Model::self_test`) in a heap arena of the size
/// it needs; returns the number of golden cases, all matching.
pub fn self_test(model: &Model<'_>) -> Result<usize> {
    let mut arena = vec![0u128; model.self_test_arena_bytes()?.div_ceil(16)];
    model.self_test(bytemuck::cast_slice_mut(&mut arena))?;
    Ok(model.file().self_test_cases().count())
}

/// `self-test FILE`: runs the file's golden cases; prints how many matched.
pub fn cmd_self_test(file: &Path) -> Result<()> {
    let bytes = ModelBytes::open(file)?;
    let model = bytes.model()?;
    let cases =
        self_test(&model).map_err(|e| anyhow!("{}: self-test failed: {e}", file.display()))?;
    crate::out!("self-test ok: {cases} cases");
    Ok(())
}

/// `self-test FILE --add TEXTS -o OUTPUT`: writes a copy of `file` with a self-test
/// section holding the non-empty lines of `texts` and their outputs, then reruns it.
pub fn cmd_add_self_test(file: &Path, texts: &Path, output: &Path) -> Result<()> {
    let bytes = ModelBytes::open(file)?;
    let model = bytes.model()?;
    let mut sequences = Vec::new();
    for (n, line) in read_lines(texts)?.into_iter().enumerate() {
        let line = line.map_err(|e| anyhow!("{}: line {}: {e}", texts.display(), n + 1))?;
        if !line.trim().is_empty() {
            sequences.push(tokenize(&model, &line)?.ids);
        }
    }
    let with = crate::convert::add_self_test(bytes.bytes(), &sequences)?;
    crate::convert::write_atomically(output, &with, &[file.to_path_buf()])?;
    let written = ModelBytes::open(output)?;
    let model = written.model()?;
    let cases = self_test(&model)?;
    eprintln!(
        "wrote {} ({} bytes, {cases} self-test cases, self-test ok)",
        output.display(),
        with.len(),
    );
    Ok(())
}

/// Token ids of one text, as the device would see them.
pub struct Tokens {
    pub ids: Vec<u32>,
    /// Word pieces before truncation (without `[CLS]`/`[SEP]`).
    pub pieces_total: usize,
    pub truncated: bool,
    /// Every word piece the model sees is `[UNK]` (and there is at least one): the
    /// vocabulary covers none of the text, so the output says nothing about it.
    pub all_unknown: bool,
}

/// Tokenizes `text` with the model's tokenizer, truncated to the model's `max_seq`.
pub fn tokenize(model: &Model<'_>, text: &str) -> Result<Tokens> {
    tokenize_window(model, text, 0)
}

/// The window of `text` that starts at word piece `skip`, as `[CLS] pieces [SEP]` of
/// at most the model's `max_seq` tokens (`Tokenizer::encode_window`); `truncated`
/// says pieces follow it.
pub fn tokenize_window(model: &Model<'_>, text: &str, skip: usize) -> Result<Tokens> {
    let mut ids = vec![0u32; model.config().max_seq as usize];
    let tokenizer = model.tokenizer();
    let enc = tokenizer
        .encode_window(text.as_bytes(), skip, &mut ids)
        .map_err(|e| anyhow!("tokenizing: {e}"))?;
    ids.truncate(enc.len);
    // Between [CLS] and [SEP].
    let pieces = ids.get(1..ids.len().saturating_sub(1)).unwrap_or(&[]);
    let all_unknown = !pieces.is_empty() && pieces.iter().all(|&id| id == tokenizer.unk_id());
    Ok(Tokens {
        ids,
        pieces_total: enc.pieces_total,
        truncated: enc.truncated,
        all_unknown,
    })
}

/// Up to `max_windows` consecutive windows of `text` (at least one): a text longer than
/// the model's context is read window after window, each `[CLS] pieces [SEP]` on its
/// own, instead of being cut after the first. The last window's `truncated` says
/// pieces were left out; `all_unknown` is set on each window only if the text's
/// pieces read are all `[UNK]`.
///
/// The host's reading of long texts (`classify --windows`, `eval --windows`); a device
/// does the same with `Tokenizer::encode_window` and one arena.
pub fn tokenize_windows(model: &Model<'_>, text: &str, max_windows: usize) -> Result<Vec<Tokens>> {
    let capacity = (model.config().max_seq as usize).saturating_sub(2).max(1);
    let mut windows = vec![tokenize(model, text)?];
    while windows.len() < max_windows && windows.last().is_some_and(|w| w.truncated) {
        windows.push(tokenize_window(model, text, windows.len() * capacity)?);
    }
    let all_unknown = windows.iter().all(|w| w.all_unknown);
    for w in &mut windows {
        w.all_unknown = all_unknown;
    }
    Ok(windows)
}

/// Tokenizes one input text of `tokenize`, `embed` or `classify`: an error if the
/// tokenizer keeps nothing of it (only characters it drops), a warning on stderr if
/// it was truncated or is all `[UNK]`.
pub fn tokenize_input(model: &Model<'_>, input: &TextInput, text: &str) -> Result<Tokens> {
    let mut windows = tokenize_input_windows(model, input, text, 1)?;
    Ok(windows.swap_remove(0))
}

/// How a truncation warning names what was read before the model's `max_seq`:
/// nothing for one window, `"N windows of "` for several.
pub fn windows_read(windows: usize) -> String {
    match windows {
        1 => String::new(),
        n => format!("{n} windows of "),
    }
}

/// [`tokenize_input`] read in up to `max_windows` windows ([`tokenize_windows`]).
pub fn tokenize_input_windows(
    model: &Model<'_>,
    input: &TextInput,
    text: &str,
    max_windows: usize,
) -> Result<Vec<Tokens>> {
    let windows = tokenize_windows(model, text, max_windows)?;
    let last = &windows[windows.len() - 1];
    if last.pieces_total == 0 {
        bail!("no word pieces: the tokenizer drops every character of the text");
    }
    if last.truncated {
        let read = windows_read(windows.len());
        eprintln!(
            "warning: {}: {} word pieces; truncated to {read}the model's {} tokens (incl. [CLS]/[SEP])",
            input.label,
            last.pieces_total,
            model.config().max_seq
        );
    }
    if last.all_unknown {
        eprintln!(
            "warning: {}: every word piece is [UNK] (the model's vocabulary covers none of the text); the result says nothing about it",
            input.label
        );
    }
    Ok(windows)
}

/// Reusable working memory for forward passes, sized for the model's `max_seq`.
pub struct Runner<'m> {
    pub model: Model<'m>,
    arena: Vec<u128>,
}

/// One forward pass's result.
pub struct Output {
    /// Logits or embedding, as f32.
    pub values: Vec<f32>,
    /// Class probabilities (classifiers only): integer softmax for int8 models
    /// (`q15 / 32768`), f32 softmax otherwise.
    pub probabilities: Vec<f32>,
    /// For int8 models, the probabilities in Q15 exactly as the device computes them.
    pub probabilities_q15: Option<Vec<i32>>,
}

impl<'m> Runner<'m> {
    pub fn new(model: Model<'m>) -> Result<Self> {
        // Room for the largest batch of rows per weight pass (faster, same results).
        let bytes = model
            .arena_bytes_batched(
                model.config().max_seq as usize,
                tinyformer::model::MAX_BATCH_ROWS,
            )
            .map_err(|e| anyhow!("{e}"))?;
        Ok(Self {
            model,
            arena: vec![0u128; bytes.div_ceil(16)],
        })
    }

    /// Runs the model on token ids.
    pub fn run(&mut self, ids: &[u32]) -> Result<Output> {
        self.run_windows(core::slice::from_ref(&ids))
    }

    /// Runs the model on each window of one text ([`tokenize_windows`]) and averages
    /// the outputs (logits or embedding) over the windows before the softmax. For
    /// int8 models the average is taken on the Q16.16 outputs in integers (rounded
    /// half up), as a device would; one window is exactly [`Runner::run`].
    pub fn run_windows<T: AsRef<[u32]>>(&mut self, windows: &[T]) -> Result<Output> {
        let config = *self.model.config();
        let arena: &mut [u8] = bytemuck::cast_slice_mut(&mut self.arena);
        let n = config.output_len();
        let classifier = config.num_labels > 0;
        let count = windows.len();
        if count == 0 {
            bail!("no input windows");
        }
        if config.is_int8() {
            let mut fixed = vec![0i32; n];
            let mut sum = vec![0i64; n];
            for ids in windows {
                self.model
                    .forward_fixed(Input::new(ids.as_ref()), arena, &mut fixed)
                    .map_err(|e| anyhow!("{e}"))?;
                for (s, &v) in sum.iter_mut().zip(&fixed) {
                    *s += i64::from(v);
                }
            }
            let count = count as i64;
            for (f, &s) in fixed.iter_mut().zip(&sum) {
                // The mean of i32 values fits an i32.
                *f = (2 * s + count).div_euclid(2 * count) as i32;
            }
            let values = fixed.iter().map(|&v| v as f32 / 65536.0).collect();
            if classifier {
                let mut q = fixed;
                probabilities_q15(&mut q);
                let probabilities = q.iter().map(|&p| p as f32 / 32768.0).collect();
                return Ok(Output {
                    values,
                    probabilities,
                    probabilities_q15: Some(q),
                });
            }
            return Ok(Output {
                values,
                probabilities: Vec::new(),
                probabilities_q15: None,
            });
        }
        let mut values = vec![0f32; n];
        let mut one = vec![0f32; n];
        for ids in windows {
            self.model
                .forward(Input::new(ids.as_ref()), arena, &mut one)
                .map_err(|e| anyhow!("{e}"))?;
            for (v, &o) in values.iter_mut().zip(&one) {
                *v += o;
            }
        }
        if count > 1 {
            for v in &mut values {
                *v /= count as f32;
            }
        } else {
            values = one;
        }
        let probabilities = if classifier {
            let mut p = values.clone();
            tinyformer::kernels::softmax::softmax_f32(&mut p, |_| true);
            p
        } else {
            Vec::new()
        };
        Ok(Output {
            values,
            probabilities,
            probabilities_q15: None,
        })
    }

    /// Label name of class `i`.
    pub fn label(&self, i: usize) -> String {
        self.model
            .label(i)
            .map_or_else(|| format!("LABEL_{i}"), str::to_string)
    }
}

pub use tinyformer::kernels::argmax::argmax;

/// One input text: a command-line argument or a line of standard input.
pub struct TextInput {
    /// How messages name it: `text N` for the N-th argument, `standard input line N`.
    pub label: String,
    /// The text, or why it cannot be read (a line that is not valid UTF-8).
    pub text: std::result::Result<String, String>,
}

/// The arguments as input texts.
pub fn arg_texts(args: &[String]) -> Vec<TextInput> {
    args.iter()
        .enumerate()
        .map(|(i, text)| TextInput {
            label: format!("text {}", i + 1),
            text: Ok(text.clone()),
        })
        .collect()
}

/// Reads texts: the arguments, or standard input lines when there are none.
pub fn read_texts(args: &[String]) -> Result<Vec<TextInput>> {
    if !args.is_empty() {
        return Ok(arg_texts(args));
    }
    use std::io::Read;
    let mut bytes = Vec::new();
    std::io::stdin()
        .read_to_end(&mut bytes)
        .context("reading standard input")?;
    stdin_texts(&bytes)
}

/// Standard input's bytes as texts, one per line. A line that is not valid UTF-8 is
/// an error of its own: the others are still read.
pub fn stdin_texts(bytes: &[u8]) -> Result<Vec<TextInput>> {
    let texts: Vec<TextInput> = split_lines(bytes)
        .into_iter()
        .enumerate()
        .map(|(n, text)| TextInput {
            label: format!("standard input line {}", n + 1),
            text,
        })
        .collect();
    if texts.is_empty() {
        bail!("no text given (pass texts as arguments or on standard input, one per line)");
    }
    Ok(texts)
}

/// Lines of UTF-8 text (`\n` or `\r\n`; nothing after a final newline). A line that is
/// not valid UTF-8 is an error of its own, with the byte offset in that line.
pub fn split_lines(bytes: &[u8]) -> Vec<std::result::Result<String, String>> {
    if bytes.is_empty() {
        return Vec::new();
    }
    bytes
        .strip_suffix(b"\n")
        .unwrap_or(bytes)
        .split(|&b| b == b'\n')
        .map(|line| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            std::str::from_utf8(line)
                .map(str::to_string)
                .map_err(|e| format!("invalid UTF-8 at byte {}", e.valid_up_to()))
        })
        .collect()
}

/// Lines of a UTF-8 text file, as [`split_lines`] (the caller reports a bad line with
/// its number and goes on, or stops).
pub fn read_lines(path: &Path) -> Result<Vec<std::result::Result<String, String>>> {
    let raw = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    Ok(split_lines(&raw))
}

/// The key naming the input in a failed input's JSON line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputKey {
    /// `text` (tokenize, embed, classify).
    Text,
    /// `prompt` (generate).
    Prompt,
}

/// The JSON line in place of an input that failed: the input (`null` when it could
/// not be read) and the error. Fields in alphabetical order, the key order the output
/// has always had.
#[derive(Debug, serde::Serialize)]
#[serde(untagged)]
pub enum FailedInput<'a> {
    Text {
        error: String,
        text: Option<&'a str>,
    },
    Prompt {
        error: String,
        prompt: Option<&'a str>,
    },
}

/// Inputs that failed, counted so the command goes on with the others and still
/// exits non-zero at the end.
#[derive(Default)]
pub struct Failures {
    failed: usize,
    seen: usize,
}

impl Failures {
    /// Counts an input that succeeded.
    pub fn ok(&mut self) {
        self.seen += 1;
    }

    /// Reports a failed input on stderr (`error: LABEL: reason; skipped`) and, when
    /// `json_key` is given (`--json`), as a [`FailedInput`] line on
    /// stdout in its place, so the output stays one object per input in input order.
    pub fn report(
        &mut self,
        input: &TextInput,
        error: &anyhow::Error,
        json_key: Option<InputKey>,
    ) -> Result<()> {
        use std::io::Write as _;
        self.seen += 1;
        self.failed += 1;
        eprintln!("error: {}: {error:#}; skipped", input.label);
        if let Some(key) = json_key {
            let error = format!("{}: {error:#}", input.label);
            let text = input.text.as_deref().ok();
            let record = match key {
                InputKey::Text => FailedInput::Text { error, text },
                InputKey::Prompt => FailedInput::Prompt {
                    error,
                    prompt: text,
                },
            };
            writeln!(
                std::io::stdout().lock(),
                "{}",
                serde_json::to_string(&record)?
            )?;
        }
        Ok(())
    }

    /// An error if any input failed (the exit status is then non-zero).
    pub fn finish(self) -> Result<()> {
        match (self.failed, self.seen - self.failed) {
            (0, _) => Ok(()),
            (failed, 0) => bail!("every input failed ({failed}, reported above)"),
            (failed, done) => bail!(
                "{failed} of {} inputs failed (reported above); the other {done} were processed",
                self.seen
            ),
        }
    }
}

/// Runs `each` on every input in order and prints the line it returns. An input that
/// cannot be read, is empty or whitespace only (unless `allow_empty`), or for which
/// `each` fails is reported (see [`Failures::report`]; `{"text": ..., "error": ...}`
/// with `json`) and skipped; the others go on, and the result is an error if any
/// failed. An error writing to stdout ends the loop at once.
pub fn for_each_text(
    inputs: &[TextInput],
    json: bool,
    allow_empty: bool,
    mut each: impl FnMut(&TextInput, &str) -> Result<String>,
) -> Result<()> {
    use std::io::Write as _;
    let mut failures = Failures::default();
    for input in inputs {
        let line = match &input.text {
            Err(e) => Err(anyhow!("{e}")),
            Ok(text) if !allow_empty && text.trim().is_empty() => {
                Err(anyhow!("the text is empty or whitespace only"))
            }
            Ok(text) => each(input, text),
        };
        match line {
            Ok(line) => {
                failures.ok();
                writeln!(std::io::stdout().lock(), "{line}")?;
            }
            Err(e) => failures.report(input, &e, json.then_some(InputKey::Text))?,
        }
    }
    failures.finish()
}

/// The default model embedded in this binary: the bundled int8 sentiment classifier
/// (`models/default/sentiment-int8.tfm`, see `models/default/EVAL.md`).
pub fn default_model() -> ModelBytes {
    static MODEL: &[u8] = tinyformer::include_model!("../../models/default/sentiment-int8.tfm");
    ModelBytes::Static(
        MODEL,
        "the embedded default model (models/default/sentiment-int8.tfm)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_stand_on_their_own() {
        assert!(split_lines(b"").is_empty());
        assert_eq!(split_lines(b"\n"), vec![Ok(String::new())]);
        assert_eq!(
            split_lines(b"a\r\n\nb"),
            vec![Ok("a".into()), Ok(String::new()), Ok("b".into())]
        );
        // An invalid line is its own error (offset within the line); the rest read.
        assert_eq!(
            split_lines(b"ok\nab\xffc\nfine\n"),
            vec![
                Ok("ok".into()),
                Err("invalid UTF-8 at byte 2".into()),
                Ok("fine".into())
            ]
        );
        let texts = stdin_texts(b"x\n\xc3\n").unwrap();
        assert_eq!(texts[1].label, "standard input line 2");
        assert!(stdin_texts(b"").is_err());
    }
}
