//! tinyformer generating text on a Cortex-M4F (QEMU `mps2-an386`): the int8
//! stories260K decoder (llama2.c's 260K-parameter TinyStories model) in flash, its
//! key/value cache and scratch in a `static` arena sized at compile time for a
//! 256-token context (`tinyformer::arena_bytes(MODEL, CTX)`: a model whose `max_seq`
//! is below 256 does not build), the prompt tokenized, run and continued on the device
//! with the integer sampler.
//!
//! Two runs from the same fixed prompt: `sampled` (temperature 0.8, top-p 0.9, fixed
//! seed) and `greedy` (temperature 0). After a `PROMPT "<text>"` line, each prints
//!
//! ```text
//! RUN <name> prompt_tokens=<n> max_new_tokens=<n> ctx=<n> temperature_q16=<t> top_k=<k> top_p_q16=<p> seed=<s>
//! TOKEN <id> "<text this token completes>"     (one line per generated token)
//! TEXT_REST "<text held back until the end>"  (U+FFFD for an unfinished character)
//! END <name> tokens=<n> stop=<length|eos|context>
//! ```
//!
//! (the text escaped with `str::escape_debug`, so one token is one line), then one
//! `FOOTPRINT` line (model bytes, arena bytes at context 256 and at the model's
//! `max_seq`, the static arena, peak stack) and exits with status 0 (1 on any error,
//! after an `ERROR` line).
//! `tools/generate-check.sh` compares the ids with `tinyformer generate --json` on the
//! host and counts the instructions between the `tinyformer_token_begin`/`_end`
//! markers, which enclose each decode step of the sampled run.
#![no_std]
#![no_main]

use core::fmt::{self, Write as _};
use core::sync::atomic::{AtomicU32, Ordering};
use cortex_m_rt::entry;
use cortex_m_semihosting::{debug, hio};
use panic_semihosting as _;
use static_cell::ConstStaticCell;
use tinyformer::model::decoder::sample::{scratch_len, SampleError, Sampler, SamplerSettings};
use tinyformer::tokenizer::sentencepiece::{encode_buffer_len, SentencePiece};
use tinyformer::tokenizer::stream::Utf8Stream;
use tinyformer::tokenizer::TokenizerError;
use tinyformer::{Decoder, Error, FormatError, State, StaticArena};

/// The decoder, 16-byte aligned in flash.
static MODEL: &[u8] = tinyformer::include_model!(env!("TINYFORMER_MODEL"));

/// The prompt (the host check passes the same text to `tinyformer generate`).
const PROMPT: &str = "Once upon a time";
/// Most tokens generated per run (fewer at EOS).
const MAX_NEW_TOKENS: usize = 200;
/// Context the state is planned for: the prompt plus every generated token fits.
const CTX: usize = 256;
/// Seed of the sampled run's generator.
const SEED: u64 = 42;
/// The sampled run: temperature 0.8, top-p 0.9, no top-k (Q16: `round(x * 65536)`,
/// as the host converts `--temperature 0.8 --top-p 0.9`).
const SAMPLED: SamplerSettings = SamplerSettings {
    temperature_q16: 52_429,
    top_k: 0,
    top_p_q16: 58_982,
};

/// Largest vocabulary the sampler scratch below serves (stories260K: 512).
const MAX_VOCAB: usize = 512;
/// Room for the prompt's ids (BOS, the dummy prefix, at most one id per byte).
const MAX_PROMPT_TOKENS: usize = encode_buffer_len(PROMPT.len(), true);

/// The arena and the sampler's scratch: zero-initialized statics (`.bss`), handed
/// out once as `&'static mut` (no `static mut`, no copy onto the stack). The arena is
/// exactly the state's plan at `CTX` (87,500 bytes for stories260K at 256), computed
/// by the compiler from the model's header.
static ARENA: StaticArena<{ tinyformer::arena_bytes(MODEL, CTX) }> = StaticArena::new();
static SCRATCH: ConstStaticCell<[u32; scratch_len(MAX_VOCAB)]> =
    ConstStaticCell::new([0; scratch_len(MAX_VOCAB)]);

/// Marker calls, one counter each: distinct bodies keep the compiler from merging the
/// marker functions into one address.
static STEPS_BEGUN: AtomicU32 = AtomicU32::new(0);
static STEPS_ENDED: AtomicU32 = AtomicU32::new(0);
static PREFILLS_BEGUN: AtomicU32 = AtomicU32::new(0);
static PREFILLS_ENDED: AtomicU32 = AtomicU32::new(0);

/// Marks the start of one decode step (the model step on the last token and the
/// sampling of the next): the QEMU instruction-count plugin (`tools/qemu/insncount.c`)
/// starts counting at this address.
#[inline(never)]
#[no_mangle]
pub extern "C" fn tinyformer_token_begin() {
    STEPS_BEGUN.fetch_add(1, Ordering::SeqCst);
}

/// Marks the end of one decode step; the plugin stops counting here.
#[inline(never)]
#[no_mangle]
pub extern "C" fn tinyformer_token_end() {
    STEPS_ENDED.fetch_add(1, Ordering::SeqCst);
}

/// Marks the start of the prompt's prefill (counted in a separate plugin run).
#[inline(never)]
#[no_mangle]
pub extern "C" fn tinyformer_prefill_begin() {
    PREFILLS_BEGUN.fetch_add(1, Ordering::SeqCst);
}

/// Marks the end of the prefill, after the first generated token is sampled.
#[inline(never)]
#[no_mangle]
pub extern "C" fn tinyformer_prefill_end() {
    PREFILLS_ENDED.fetch_add(1, Ordering::SeqCst);
}

/// Stack painting: the word written below the live stack before generation.
const PAINT: u32 = 0xC0FF_EE55;

extern "C" {
    /// End of `.data`/`.bss` (cortex-m-rt): the lowest address the stack may reach.
    static mut __sheap: u32;
    /// Initial stack pointer (cortex-m-rt): the top of the stack.
    static _stack_start: u32;
}

/// Fills the unused stack (from the end of static data to just below the current
/// stack pointer) with [`PAINT`]; returns its bounds.
fn paint_stack() -> (usize, usize) {
    let bottom = core::ptr::addr_of_mut!(__sheap) as usize;
    let limit = cortex_m::register::msp::read() as usize - 64;
    let mut p = bottom;
    while p < limit {
        // SAFETY: [bottom, limit) lies between the end of the static data and the
        // current stack pointer minus a margin: RAM that nothing uses yet (there is
        // no heap).
        unsafe { (p as *mut u32).write_volatile(PAINT) };
        p += 4;
    }
    (bottom, limit)
}

/// Peak stack use: distance from the stack top to the lowest overwritten word.
fn stack_peak(bottom: usize, limit: usize) -> usize {
    let mut p = bottom;
    // SAFETY: reads back the words `paint_stack` wrote, in the same range.
    while p < limit && unsafe { (p as *const u32).read_volatile() } == PAINT {
        p += 4;
    }
    core::ptr::addr_of!(_stack_start) as usize - p
}

/// The semihosting console (absent without a debugger; then nothing is printed).
type Out = Option<hio::HostStream>;

/// One line of output.
macro_rules! say {
    ($out:expr, $($t:tt)*) => {
        if let Some(o) = $out.as_mut() {
            let _ = writeln!(o, $($t)*);
        }
    };
}

/// Why the firmware stopped, with the core's error where there is one.
enum Failure {
    /// The model bytes failed validation (checksum, layout) or are not a decoder.
    Model(FormatError),
    /// The model's tokenizer section, or the prompt, was refused.
    Tokenizer(TokenizerError),
    /// The decoder refused a state, the prompt or a step.
    Decoder(Error),
    /// The sampler refused its settings or logits.
    Sampler(SampleError),
    /// The static arena's compile-time size differs from the validated model's plan.
    ArenaSize { needed: usize, have: usize },
    /// The vocabulary is larger than the sampler scratch.
    VocabTooLarge { vocab: usize },
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Model(e) => write!(f, "model: {e}"),
            Failure::Tokenizer(e) => write!(f, "tokenizer: {e}"),
            Failure::Decoder(e) => write!(f, "decoder: {e}"),
            Failure::Sampler(e) => write!(f, "sampler: {e}"),
            Failure::ArenaSize { needed, have } => write!(
                f,
                "the plan at context {CTX} needs {needed} bytes, the compile-time arena is {have}"
            ),
            Failure::VocabTooLarge { vocab } => write!(
                f,
                "{vocab} tokens in the vocabulary, the sampler scratch serves {MAX_VOCAB}"
            ),
        }
    }
}

impl From<FormatError> for Failure {
    fn from(e: FormatError) -> Self {
        Failure::Model(e)
    }
}
impl From<TokenizerError> for Failure {
    fn from(e: TokenizerError) -> Self {
        Failure::Tokenizer(e)
    }
}
impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Decoder(e)
    }
}
impl From<SampleError> for Failure {
    fn from(e: SampleError) -> Self {
        Failure::Sampler(e)
    }
}

#[entry]
fn main() -> ! {
    let mut out = hio::hstdout().ok();
    let status = match run(&mut out) {
        Ok(()) => debug::EXIT_SUCCESS,
        Err(failure) => {
            say!(out, "ERROR {}", failure);
            debug::EXIT_FAILURE
        }
    };
    debug::exit(status);
    loop {
        cortex_m::asm::wfi();
    }
}

fn run(out: &mut Out) -> Result<(), Failure> {
    let (bottom, limit) = paint_stack();

    // One validation pass (including the CRC) before anything runs.
    let model = Decoder::from_bytes(MODEL)?;
    let max_seq = model.config().max_seq as usize;
    let needed = model.arena_bytes(CTX)?;
    let needed_max_seq = model.arena_bytes(max_seq)?;
    let vocab = model.config().vocab_size as usize;
    if vocab > MAX_VOCAB {
        return Err(Failure::VocabTooLarge { vocab });
    }
    let arena = ARENA.take().expect("the arena is taken once");
    // The compiler sized the arena from the header; the validated model's plan agrees.
    if arena.len() != needed {
        return Err(Failure::ArenaSize {
            needed,
            have: arena.len(),
        });
    }
    let scratch = &mut SCRATCH.take()[..scratch_len(vocab)];
    let generator = Generator {
        tokenizer: SentencePiece::from_section(model.file().tokenizer_section())?,
        bos: model.params().bos_id,
        eos: model.params().eos_id,
    };

    let mut prompt = [0u32; MAX_PROMPT_TOKENS];
    let prompt_len = generator
        .tokenizer
        .encode(PROMPT.as_bytes(), true, &mut prompt)?;
    let prompt = &prompt[..prompt_len];

    if let Some(o) = out.as_mut() {
        let _ = writeln!(o, "PROMPT \"{}\"", PROMPT.escape_debug());
    }
    let runs = [
        ("sampled", SAMPLED, true),
        ("greedy", SamplerSettings::GREEDY, false),
    ];
    for (name, settings, measured) in runs {
        let mut state = State::new(&model, &mut *arena, CTX)?;
        let mut sampler = Sampler::new(settings, SEED)?;
        say!(
            out,
            "RUN {} prompt_tokens={} max_new_tokens={} ctx={} temperature_q16={} top_k={} \
             top_p_q16={} seed={}",
            name,
            prompt.len(),
            MAX_NEW_TOKENS,
            CTX,
            settings.temperature_q16,
            settings.top_k,
            settings.top_p_q16,
            SEED
        );
        let (generated, stop) =
            generator.generate(out, &mut state, &mut sampler, scratch, prompt, measured)?;
        say!(out, "END {} tokens={} stop={}", name, generated, stop);
    }

    say!(
        out,
        "FOOTPRINT model_bytes={} arena_bytes_ctx{}={} arena_bytes_max_seq={} max_seq={} \
         arena_static_bytes={} stack_peak_bytes={}",
        MODEL.len(),
        CTX,
        needed,
        needed_max_seq,
        max_seq,
        arena.len(),
        stack_peak(bottom, limit)
    );
    Ok(())
}

/// What a run needs besides the state and the sampler: the tokenizer (ids to text)
/// and the ids that end a sequence.
struct Generator<'m> {
    tokenizer: SentencePiece<'m>,
    bos: u32,
    eos: u32,
}

impl Generator<'_> {
    /// Continues `prompt` (ids, BOS first) with at most [`MAX_NEW_TOKENS`] tokens, as
    /// the host's `tinyformer generate` does: a token is printed unless it is EOS or
    /// BOS, which end the run, and the last token is not run through the model. With
    /// `measured`, the prefill and each decode step are enclosed in the marker
    /// functions. Returns the number of generated tokens and why generation stopped.
    fn generate(
        &self,
        out: &mut Out,
        state: &mut State<'_, '_>,
        sampler: &mut Sampler,
        scratch: &mut [u32],
        prompt: &[u32],
        measured: bool,
    ) -> Result<(usize, &'static str), Failure> {
        if measured {
            tinyformer_prefill_begin();
        }
        let logits = state.prefill_fixed(prompt)?;
        let mut next = sampler.sample(logits, scratch)?;
        if measured {
            tinyformer_prefill_end();
        }
        let mut stream = Utf8Stream::new();
        let mut prev = prompt.last().copied().unwrap_or(self.bos);
        let mut generated = 0;
        let stop = loop {
            if generated >= MAX_NEW_TOKENS {
                break "length";
            }
            if next == self.eos || next == self.bos {
                break "eos";
            }
            generated += 1;
            // The id, then the text it completes (escaped, one line per token).
            if let Some(o) = out.as_mut() {
                let _ = write!(o, "TOKEN {} \"", next);
                stream.push(self.tokenizer.decode(prev, next), |s| {
                    let _ = write!(o, "{}", s.escape_debug());
                });
                let _ = writeln!(o, "\"");
            }
            prev = next;
            if generated >= MAX_NEW_TOKENS {
                break "length";
            }
            if state.pos() == state.capacity() {
                break "context";
            }
            if measured {
                tinyformer_token_begin();
            }
            let logits = state.step_fixed(next)?;
            next = sampler.sample(logits, scratch)?;
            if measured {
                tinyformer_token_end();
            }
        };
        if let Some(o) = out.as_mut() {
            let _ = write!(o, "TEXT_REST \"");
            stream.finish(|s| {
                let _ = write!(o, "{}", s.escape_debug());
            });
            let _ = writeln!(o, "\"");
        }
        Ok((generated, stop))
    }
}
