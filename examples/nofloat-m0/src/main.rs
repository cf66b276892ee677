//! The whole int8 inference path linked for a Cortex-M0+, which has no FPU: the
//! encoder (validation, WordPiece tokenizer, integer forward pass, integer softmax)
//! and the decoder (validation, SentencePiece tokenizer, int8 prefill and steps,
//! integer sampling, streaming detokenization). CI lists the linked symbols and fails
//! if any soft-float routine (`__aeabi_f*`, `__aeabi_d*`) is present.
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use panic_halt as _;
use tinyformer::model::decoder::sample::{Sampler, SamplerSettings};
use tinyformer::model::probabilities_q15;
use tinyformer::tokenizer::sentencepiece::SentencePiece;
use tinyformer::tokenizer::stream::Utf8Stream;
use tinyformer::{Arena, Decoder, Input, Model, State};

/// Stand-in for a model in flash; `black_box` keeps the compiler from assuming its
/// contents, so every path of `from_bytes` and the forward pass is linked.
static MODEL: tinyformer::format::Aligned<[u8; 64]> = tinyformer::format::Aligned([0; 64]);

#[entry]
fn main() -> ! {
    let bytes: &[u8] = core::hint::black_box(&MODEL.0[..]);
    let mut arena = Arena::<8192>::new();
    if let Ok(model) = Model::from_bytes(bytes) {
        let mut ids = [0u32; 64];
        let text = core::hint::black_box(b"a microcontroller reads this");
        let len = model
            .tokenizer()
            .encode(text, &mut ids)
            .map_or(2, |e| e.len);
        let ids = core::hint::black_box(&ids[..len]);
        let mut out = [0i32; 16];
        let n = model.config().output_len().min(out.len());
        if model
            .forward_fixed(Input::new(ids), arena.as_mut_slice(), &mut out[..n])
            .is_ok()
        {
            probabilities_q15(&mut out[..n]);
        }
        core::hint::black_box(out);
    }
    generate(core::hint::black_box(&MODEL.0[..]), arena.as_mut_slice());
    loop {
        cortex_m::asm::wfi();
    }
}

/// The decoder's int8 path: prompt, prefill, sampled steps, streamed text.
fn generate(bytes: &[u8], arena: &mut [u8]) {
    let Ok(model) = Decoder::from_bytes(bytes) else {
        return;
    };
    let Ok(tokenizer) = SentencePiece::from_section(model.file().tokenizer_section()) else {
        return;
    };
    let mut ids = [0u32; 32];
    let text = core::hint::black_box(b"Once upon a time");
    let Ok(len) = tokenizer.encode(text, true, &mut ids) else {
        return;
    };
    let Ok(mut state) = State::new(&model, arena, 16) else {
        return;
    };
    // Every sampler path: temperature, top-k and top-p (settings unknown to the
    // compiler).
    let settings = core::hint::black_box(SamplerSettings {
        temperature_q16: 52_429,
        top_k: 40,
        top_p_q16: 58_982,
    });
    let Ok(mut sampler) = Sampler::new(settings, 42) else {
        return;
    };
    let mut scratch = [0u32; 512];
    let mut stream = Utf8Stream::new();
    let mut prev = model.params().bos_id;
    let mut next = match state.prefill_fixed(&ids[..len]) {
        Ok(logits) => sampler.sample(logits, &mut scratch).unwrap_or(0),
        Err(_) => return,
    };
    while let Ok(logits) = state.step_fixed(next) {
        stream.push(tokenizer.decode(prev, next), |s| {
            core::hint::black_box(s);
        });
        prev = next;
        next = sampler.sample(logits, &mut scratch).unwrap_or(0);
    }
}
