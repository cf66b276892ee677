//! The whole int8 inference path (validation, tokenizer, integer forward pass,
//! integer softmax) linked for a Cortex-M0+, which has no FPU: CI lists the linked
//! symbols and fails if any soft-float routine (`__aeabi_f*`, `__aeabi_d*`) is present.
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use panic_halt as _;
use tinyformer::model::probabilities_q15;
use tinyformer::{Arena, Input, Model};

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
    loop {
        cortex_m::asm::wfi();
    }
}
