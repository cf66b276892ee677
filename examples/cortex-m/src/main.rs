//! tinyformer on a Cortex-M4F (QEMU `mps2-an386`): the default int8 sentiment model
//! in flash, the arena in a `static`, text tokenized and classified on the device.
//!
//! Prints one line per sentence,
//! `RESULT <index> <label> <q15 probabilities, comma separated> <text>`, then a
//! `FOOTPRINT` line with the model, arena and peak stack bytes, and exits with status 0
//! (1 on any error). `tools/firmware-check.sh` compares the results with
//! `tinyformer classify --json` on the host.
//!
//! Output goes over semihosting as plain text, or, with the `defmt` feature, as defmt
//! frames (`defmt-semihosting`) that the host decodes with `defmt-print -e <ELF>`:
//! the same lines, with the formatting done on the host instead of the device.
#![no_std]
#![no_main]

use core::fmt::Write as _;
use cortex_m_rt::entry;
use cortex_m_semihosting::debug;
#[cfg(not(feature = "defmt"))]
use cortex_m_semihosting::hio;
#[cfg(feature = "defmt")]
use defmt_semihosting as _;
use panic_semihosting as _;
use tinyformer::model::probabilities_q15;
use tinyformer::{Arena, Input, Model};

#[cfg(feature = "alloc")]
extern crate alloc;

#[cfg(feature = "alloc")]
#[global_allocator]
static HEAP: embedded_alloc::LlffHeap = embedded_alloc::LlffHeap::empty();

/// The model, 16-byte aligned in flash.
static MODEL: &[u8] = tinyformer::include_model!(env!("TINYFORMER_MODEL"));

/// The sentences to classify (the host check reads the same file).
const SENTENCES: &str = include_str!("../sentences.txt");

/// Working memory of the forward pass; the model's `arena_bytes(max_seq)` must fit.
const ARENA_BYTES: usize = 32 * 1024;
static mut ARENA: Arena<ARENA_BYTES> = Arena::new();

/// Longest token sequence this firmware accepts (the model may allow fewer).
const MAX_TOKENS: usize = 128;
/// Most labels this firmware prints.
const MAX_LABELS: usize = 16;

/// Inferences started and finished; written by the marker functions below.
static BEGUN: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);
static ENDED: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);

/// Marks the start of one inference (forward pass + probabilities): the QEMU
/// instruction-count plugin (`tools/qemu/insncount.c`) starts counting at this address.
#[inline(never)]
#[no_mangle]
pub extern "C" fn tinyformer_inference_begin() {
    BEGUN.fetch_add(1, core::sync::atomic::Ordering::SeqCst);
}

/// Marks the end of one inference; the plugin stops counting here.
#[inline(never)]
#[no_mangle]
pub extern "C" fn tinyformer_inference_end() {
    ENDED.fetch_add(1, core::sync::atomic::Ordering::SeqCst);
}

/// Stack painting: the word written below the live stack before inference.
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
        // current stack pointer minus a margin: RAM that nothing uses yet (no heap
        // region lives there: the optional heap is a static array below `__sheap`).
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

/// Where output lines go: the semihosting console (absent without a debugger; then
/// nothing is printed).
#[cfg(not(feature = "defmt"))]
type Out = Option<hio::HostStream>;
#[cfg(not(feature = "defmt"))]
fn open_output() -> Out {
    hio::hstdout().ok()
}

/// With `defmt`, the global logger of `defmt-semihosting` owns the output.
#[cfg(feature = "defmt")]
type Out = ();
#[cfg(feature = "defmt")]
fn open_output() -> Out {}

/// One line of output. The format strings stay within what both `core::fmt` and
/// defmt accept (positional `{}`, arguments that are `Display` and `defmt::Format`).
#[cfg(not(feature = "defmt"))]
macro_rules! say {
    ($out:expr, $($t:tt)*) => {
        if let Some(o) = $out.as_mut() {
            let _ = writeln!(o, $($t)*);
        }
    };
}
#[cfg(feature = "defmt")]
macro_rules! say {
    ($out:expr, $($t:tt)*) => {{
        let _ = &$out;
        defmt::println!($($t)*);
    }};
}

#[entry]
fn main() -> ! {
    let mut out = open_output();
    let status = match run(&mut out) {
        Ok(()) => debug::EXIT_SUCCESS,
        Err(message) => {
            say!(out, "ERROR {}", message);
            debug::EXIT_FAILURE
        }
    };
    debug::exit(status);
    loop {
        cortex_m::asm::wfi();
    }
}

fn run(out: &mut Out) -> Result<(), &'static str> {
    #[cfg(feature = "alloc")]
    {
        // SAFETY: called once, before any allocation.
        unsafe {
            embedded_alloc::init!(HEAP, 4096);
        }
    }
    let (bottom, limit) = paint_stack();

    // One validation pass (including the CRC): a corrupted model is refused here,
    // before any inference.
    let model = match Model::from_bytes(MODEL) {
        Ok(m) => m,
        Err(e) => {
            say!(out, "MODEL_INVALID {}", e);
            return Err("model failed validation");
        }
    };
    let config = *model.config();
    let max_seq = (config.max_seq as usize).min(MAX_TOKENS);
    let labels = config.num_labels as usize;
    if labels == 0 || labels > MAX_LABELS {
        return Err("model is not a classifier this firmware can print");
    }
    let needed = model
        .arena_bytes(max_seq)
        .map_err(|_| "bad sequence length")?;
    if needed > ARENA_BYTES {
        say!(
            out,
            "ARENA_TOO_SMALL needed={} have={}",
            needed,
            ARENA_BYTES
        );
        return Err("arena too small");
    }
    // SAFETY: the only reference to ARENA, taken once in the single thread of the
    // program (no interrupt handler touches it).
    let arena = unsafe { &mut *core::ptr::addr_of_mut!(ARENA) };

    #[cfg(feature = "alloc")]
    let mut results = alloc::vec::Vec::new();
    for (index, text) in SENTENCES
        .lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
    {
        let mut ids = [0u32; MAX_TOKENS];
        let encoding = model
            .tokenizer()
            .encode(text.as_bytes(), &mut ids[..max_seq])
            .map_err(|_| "tokenizer")?;
        let mut probs = [0i32; MAX_LABELS];
        tinyformer_inference_begin();
        model
            .forward_fixed(
                Input::new(&ids[..encoding.len]),
                arena.as_mut_slice(),
                &mut probs[..labels],
            )
            .map_err(|_| "forward pass")?;
        probabilities_q15(&mut probs[..labels]);
        tinyformer_inference_end();
        let best = (0..labels).fold(0, |b, i| if probs[i] > probs[b] { i } else { b });
        // "p0,p1,...": at most MAX_LABELS values of at most 6 characters plus commas.
        let mut q15: heapless::String<{ MAX_LABELS * 7 }> = heapless::String::new();
        for (i, p) in probs[..labels].iter().enumerate() {
            let _ = write!(q15, "{}{}", if i > 0 { "," } else { "" }, p);
        }
        let label = model.label(best).unwrap_or("?");
        say!(out, "RESULT {} {} {} {}", index, label, q15.as_str(), text);
        say!(out, "TOKENS {} {}", index, encoding.len);
        #[cfg(feature = "alloc")]
        results.push(best as u8);
    }
    #[cfg(feature = "alloc")]
    say!(
        out,
        "HEAP results={} heap_used={}",
        results.len(),
        HEAP.used()
    );
    say!(
        out,
        "FOOTPRINT model_bytes={} arena_bytes={} stack_peak_bytes={}",
        MODEL.len(),
        needed,
        stack_peak(bottom, limit)
    );
    Ok(())
}
