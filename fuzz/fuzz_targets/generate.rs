//! Decoder model files that pass validation, then a whole generation: the prompt
//! tokenized by the file's own SentencePiece tokenizer, a state in an exactly sized
//! arena, prefill, a bounded number of sampled steps (on past the end of the context),
//! the generated pieces decoded through `Utf8Stream`, then a reset and the prompt
//! again. Every call must return Ok or the documented error, never panic, whatever the
//! weights; the invariants below are `assert!`s, so a failure is a bug the fuzzer
//! reports:
//!
//! - the tokenizer section of a valid decoder file loads, with the header's vocabulary
//!   size, BOS and EOS; `encode` into `encode_buffer_len` ids succeeds, ids < vocab;
//! - `arena_bytes(ctx)` is Ok exactly for `1..=max_seq`, and `State::new` succeeds in
//!   that many bytes, refuses one byte fewer and a misaligned arena;
//! - prefill succeeds exactly when the prompt is non-empty and fits the context,
//!   otherwise `EmptySequence` or `ContextFull`, with nothing run; an out-of-range id
//!   is `TokenOutOfRange` naming it;
//! - logits are `Q16` for int8 models and `F32` for float ones, one per token; the int8
//!   entry points (`prefill_fixed`, `step_fixed`) are `NotQuantized` on float models;
//! - a sampled id is below the vocabulary size; greedy is the argmax;
//! - `step` succeeds while `pos() < capacity()` and is `ContextFull` (nothing changed)
//!   at `pos() == capacity()`; `pos()` never exceeds the context;
//! - the text streamed by `Utf8Stream` equals `String::from_utf8_lossy` of all decoded
//!   bytes;
//! - after `reset`, the same prompt gives the same logits bit for bit (through the other
//!   entry point for int8 models).
//!
//! Input: a decoder model file (its header's `file_len` bytes) followed by a request
//! trailer (missing bytes are 0; an empty trailer is `DEFAULT_REQUEST`):
//!
//! | byte | meaning |
//! |---|---|
//! | 0 | context: `1 + b % min(max_seq, MAX_CTX)`; 255 = 0 and 254 = `max_seq + 1` (both refused) |
//! | 1 | flags: bit 0 BOS before the prompt, bit 1 keep the whole prompt (else cut to the context), bit 2 int8 entry points, bit 3 also try an arena one byte short, bit 4 also try a misaligned arena, bit 5 also feed out-of-range ids |
//! | 2 | temperature: `b << 10` in Q16 (0 greedy, 64 = 1.0), 255 = `u32::MAX` |
//! | 3 | top-k (0 off) |
//! | 4 | top-p: 0 off (65536), 1 = 1, otherwise `257 * b` in Q16 |
//! | 5..9 | sampler seed, u32 LE |
//! | 9 | tokens to sample: `b % (MAX_STEPS + 1)` |
//! | 10.. | prompt text, any bytes, the first `MAX_PROMPT` |
//!
//! The custom mutator (`mutate_model_and_request`, shared with `classify`) mutates a
//! window of one tensor payload, of the tokenizer section or of the header, or the
//! trailer, and repairs the CRC, so mutated files keep passing validation.
#![no_main]

use libfuzzer_sys::{fuzz_mutator, fuzz_target};
use tinyformer::model::decoder::sample::{
    argmax, logit_to_q16, scratch_len, Sampler, SamplerSettings, Q16_ONE,
};
use tinyformer::tokenizer::sentencepiece::{encode_buffer_len, SentencePiece};
use tinyformer::tokenizer::stream::Utf8Stream;
use tinyformer::{Decoder, Error, Logits, State};
use tinyformer_fuzz::{aligned, mutate_model_and_request, split_request};

/// Longest context a run uses (the model's `max_seq` if smaller): keeps runs fast.
const MAX_CTX: usize = 16;
/// Most tokens sampled after the prompt.
const MAX_STEPS: usize = 32;
/// Most prompt bytes tokenized (the merge loop is quadratic in the prompt length).
const MAX_PROMPT: usize = 64;
/// The request of an input without a trailer (so that a bare model file is a seed):
/// context 8, BOS, temperature 1.0, top-k 40, seed 42, 12 tokens.
const DEFAULT_REQUEST: &[u8] = b"\x07\x01\x40\x28\x00\x2a\x00\x00\x00\x0cOnce upon a time";

const BOS: u8 = 1;
const WHOLE_PROMPT: u8 = 2;
const FIXED: u8 = 4;
const SHORT_ARENA: u8 = 8;
const MISALIGNED_ARENA: u8 = 16;
const BAD_TOKEN: u8 = 32;

/// The trailer, decoded.
struct Request<'a> {
    ctx: u8,
    flags: u8,
    settings: SamplerSettings,
    seed: u64,
    steps: usize,
    prompt: &'a [u8],
}

impl<'a> Request<'a> {
    fn parse(trailer: &'a [u8]) -> Self {
        let trailer = if trailer.is_empty() {
            DEFAULT_REQUEST
        } else {
            trailer
        };
        let byte = |i: usize| trailer.get(i).copied().unwrap_or(0);
        let prompt = trailer.get(10..).unwrap_or(&[]);
        Self {
            ctx: byte(0),
            flags: byte(1),
            settings: SamplerSettings {
                temperature_q16: match byte(2) {
                    255 => u32::MAX,
                    b => u32::from(b) << 10,
                },
                top_k: u32::from(byte(3)),
                top_p_q16: match byte(4) {
                    0 => Q16_ONE,
                    1 => 1,
                    b => 257 * u32::from(b),
                },
            },
            seed: u64::from(u32::from_le_bytes([byte(5), byte(6), byte(7), byte(8)])),
            steps: usize::from(byte(9)) % (MAX_STEPS + 1),
            prompt: &prompt[..prompt.len().min(MAX_PROMPT)],
        }
    }
}

/// Logits copied out of the state: Q16 for the sampler, the raw bits to compare runs.
#[derive(PartialEq, Eq)]
struct Owned {
    q16: Vec<i32>,
    bits: Vec<u32>,
}

impl Owned {
    fn new(logits: Logits<'_>, int8: bool, vocab: u32) -> Self {
        match logits {
            Logits::F32(l) => {
                assert!(!int8, "an int8 model returned f32 logits");
                assert_eq!(l.len(), vocab as usize, "one logit per token");
                Self {
                    q16: l.iter().map(|&v| logit_to_q16(v)).collect(),
                    bits: l.iter().map(|v| v.to_bits()).collect(),
                }
            }
            Logits::Q16(l) => {
                assert!(int8, "a float model returned Q16 logits");
                Self::fixed(l, vocab)
            }
        }
    }

    fn fixed(logits: &[i32], vocab: u32) -> Self {
        assert_eq!(logits.len(), vocab as usize, "one logit per token");
        Self {
            q16: logits.to_vec(),
            bits: logits.iter().map(|&v| v as u32).collect(),
        }
    }
}

/// `prefill`, or `prefill_fixed` when `fixed` (which a float model refuses with
/// `NotQuantized`, changing nothing; then `prefill` runs).
fn prefill(
    model: &Decoder<'_>,
    state: &mut State<'_, '_>,
    ids: &[u32],
    fixed: bool,
) -> Result<Owned, Error> {
    let (int8, vocab) = (model.config().is_int8(), model.config().vocab_size);
    if fixed {
        let pos = state.pos();
        match state.prefill_fixed(ids) {
            Ok(l) => {
                assert!(int8, "prefill_fixed ran a float model");
                return Ok(Owned::fixed(l, vocab));
            }
            Err(Error::NotQuantized) => {
                assert!(!int8, "prefill_fixed refused an int8 model");
                assert_eq!(state.pos(), pos);
            }
            Err(e) => return Err(e),
        }
    }
    state.prefill(ids).map(|l| Owned::new(l, int8, vocab))
}

/// `step`, or `step_fixed` when `fixed` (see [`prefill`]).
fn step(
    model: &Decoder<'_>,
    state: &mut State<'_, '_>,
    token: u32,
    fixed: bool,
) -> Result<Owned, Error> {
    let (int8, vocab) = (model.config().is_int8(), model.config().vocab_size);
    if fixed {
        let pos = state.pos();
        match state.step_fixed(token) {
            Ok(l) => {
                assert!(int8, "step_fixed ran a float model");
                return Ok(Owned::fixed(l, vocab));
            }
            Err(Error::NotQuantized) => {
                assert!(!int8, "step_fixed refused an int8 model");
                assert_eq!(state.pos(), pos);
            }
            Err(e) => return Err(e),
        }
    }
    state.step(token).map(|l| Owned::new(l, int8, vocab))
}

/// What prefilling a fresh state for `ctx` positions with `ids` must return.
fn expected_prefill(ids: &[u32], ctx: usize, vocab: u32) -> Result<(), Error> {
    if ids.is_empty() {
        return Err(Error::EmptySequence);
    }
    if ids.len() > ctx {
        return Err(Error::ContextFull { ctx });
    }
    match ids.iter().position(|&id| id >= vocab) {
        Some(index) => Err(Error::TokenOutOfRange {
            index,
            id: ids[index],
            vocab,
        }),
        None => Ok(()),
    }
}

fn generate(model: &Decoder<'_>, request: &Request<'_>) {
    let config = *model.config();
    let params = *model.params();
    let vocab = config.vocab_size;
    let flags = request.flags;

    // The tokenizer section was validated with the file.
    let tok = SentencePiece::from_section(model.file().tokenizer_section())
        .expect("a valid decoder file's tokenizer section loads");
    assert_eq!(tok.vocab_size(), vocab);
    assert_eq!(tok.bos_id(), params.bos_id);
    assert_eq!(tok.eos_id(), params.eos_id);
    let bos = flags & BOS != 0;
    let mut ids = vec![0u32; encode_buffer_len(request.prompt.len(), bos)];
    let n = tok
        .encode(request.prompt, bos, &mut ids)
        .expect("encode_buffer_len always fits");
    assert!(n <= ids.len());
    ids.truncate(n);
    assert!(ids.iter().all(|&id| id < vocab), "encoded id out of range");
    assert_eq!(n == 0, request.prompt.is_empty() && !bos);
    if bos {
        assert_eq!(ids[0], params.bos_id);
    }

    // The context and its arena.
    let max_seq = config.max_seq as usize;
    let ctx = match request.ctx {
        255 => 0,
        254 => max_seq + 1,
        b => 1 + usize::from(b) % max_seq.min(MAX_CTX),
    };
    let needed = match model.arena_bytes(ctx) {
        Ok(needed) => {
            assert!((1..=max_seq).contains(&ctx), "arena for context {ctx}");
            needed
        }
        Err(e) => {
            let want = if ctx == 0 {
                Error::EmptySequence
            } else {
                Error::SequenceTooLong {
                    max: max_seq,
                    got: ctx,
                }
            };
            assert_eq!(e, want);
            assert_eq!(State::new(model, &mut [], ctx).err(), Some(want));
            let _ = e.to_string();
            return;
        }
    };
    // u32 words: 4-byte aligned, as the arena requires, with a spare word to misalign.
    let mut words = vec![0u32; needed.div_ceil(4) + 1];
    let arena: &mut [u8] = bytemuck::cast_slice_mut(&mut words);
    if flags & SHORT_ARENA != 0 {
        let got = needed - 1;
        let e = State::new(model, &mut arena[..got], ctx).err();
        assert_eq!(e, Some(Error::ArenaTooSmall { needed, got }));
    }
    if flags & MISALIGNED_ARENA != 0 {
        let e = State::new(model, &mut arena[1..needed + 1], ctx).err();
        assert!(matches!(e, Some(Error::ArenaMisaligned { .. })), "{e:?}");
    }
    let mut state =
        State::new(model, &mut arena[..needed], ctx).expect("an exact, aligned arena is enough");
    assert_eq!((state.pos(), state.capacity()), (0, ctx));
    assert_eq!(state.plan().total_bytes(), needed);

    // Prefill: the prompt cut to the context unless asked otherwise; a prompt that is
    // refused is replaced by BOS alone, so that generation still runs.
    if flags & WHOLE_PROMPT == 0 {
        ids.truncate(ctx);
    }
    let fixed = flags & FIXED != 0;
    if flags & BAD_TOKEN != 0 && !ids.is_empty() {
        let mut bad = ids.clone();
        let index = request.seed as usize % bad.len();
        bad[index] = vocab + request.seed as u32 % 3;
        let e = prefill(model, &mut state, &bad, fixed).err();
        assert_eq!(e, expected_prefill(&bad, ctx, vocab).err());
        assert_eq!(state.pos(), 0, "a refused prefill ran");
    }
    let first = match prefill(model, &mut state, &ids, fixed) {
        Ok(logits) => {
            assert_eq!(expected_prefill(&ids, ctx, vocab), Ok(()));
            logits
        }
        Err(e) => {
            assert_eq!(Err(e), expected_prefill(&ids, ctx, vocab));
            assert_eq!(state.pos(), 0, "a refused prefill ran");
            let _ = e.to_string();
            ids = vec![params.bos_id];
            prefill(model, &mut state, &ids, fixed).expect("BOS alone fits any context")
        }
    };
    assert_eq!(state.pos(), ids.len());

    // Generation, streamed: the prompt's pieces, then each sampled token's.
    let mut sampler = Sampler::new(request.settings, request.seed).expect("top-p in range");
    let mut scratch = vec![0u32; scratch_len(vocab as usize)];
    let mut stream = Utf8Stream::new();
    let (mut text, mut decoded) = (String::new(), Vec::new());
    let mut push = |stream: &mut Utf8Stream, piece: &[u8]| {
        decoded.extend_from_slice(piece);
        stream.push(piece, |s| {
            assert!(!s.is_empty(), "empty text emitted");
            text.push_str(s);
        });
        assert!(stream.pending().len() < 4);
    };
    let mut prev = params.bos_id;
    for &id in &ids {
        push(&mut stream, tok.decode(prev, id));
        prev = id;
    }
    let mut logits = first.q16.clone();
    let mut refused = 0;
    for index in 0..request.steps {
        let token = sampler
            .sample(&logits, &mut scratch)
            .expect("scratch_len is enough");
        assert!(token < vocab, "sampled {token}, vocabulary {vocab}");
        if request.settings.temperature_q16 == 0 {
            assert_eq!(token, argmax(&logits));
        }
        push(&mut stream, tok.decode(prev, token));
        prev = token;
        let pos = state.pos();
        assert!(pos <= ctx, "position {pos} past the context {ctx}");
        if flags & BAD_TOKEN != 0 && index == 0 {
            let e = step(model, &mut state, vocab, fixed).err();
            let want = if pos == ctx {
                Error::ContextFull { ctx }
            } else {
                Error::TokenOutOfRange {
                    index: 0,
                    id: vocab,
                    vocab,
                }
            };
            assert_eq!(e, Some(want));
            assert_eq!(state.pos(), pos);
        }
        match step(model, &mut state, token, fixed) {
            Ok(next) => {
                assert!(pos < ctx, "a step past the context ran");
                assert_eq!(state.pos(), pos + 1);
                logits = next.q16;
            }
            Err(e) => {
                assert_eq!(e, Error::ContextFull { ctx }, "step at {pos} of {ctx}");
                assert_eq!(pos, ctx, "step refused before the context is full");
                assert_eq!(state.pos(), pos);
                let _ = e.to_string();
                refused += 1;
                if refused == 2 {
                    break;
                }
            }
        }
    }
    stream.finish(|s| text.push_str(s));
    assert!(stream.pending().is_empty());
    assert_eq!(text, String::from_utf8_lossy(&decoded), "streamed text");

    // A reset state repeats its first logits.
    state.reset();
    assert_eq!(state.pos(), 0);
    let again = prefill(model, &mut state, &ids, !fixed).expect("the prompt ran before");
    assert!(again == first, "the first logits differ after reset");
}

fuzz_target!(|data: &[u8]| {
    let (model_bytes, trailer) = split_request(data);
    let buf = aligned(model_bytes);
    let Ok(model) = Decoder::from_bytes(buf.as_bytes()) else {
        return;
    };
    generate(&model, &Request::parse(trailer));
});

fuzz_mutator!(|data: &mut [u8], size: usize, max_size: usize, seed: u32| {
    mutate_model_and_request(data, size, max_size, seed)
});
