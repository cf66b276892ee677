//! tinyformer on a Cortex-M4F (QEMU `mps2-an386`): the default int8 sentiment model
//! in flash, the arena in a `static` sized at compile time, text tokenized and
//! classified on the device.
//!
//! The arena is exactly `tinyformer::arena_bytes(MODEL, MAX_TOKENS)` bytes, computed
//! by the compiler from the model's header: a model whose `max_seq` is below
//! `MAX_TOKENS` (`TINYFORMER_MAX_TOKENS` in `.cargo/config.toml`, 64) fails to build,
//! it does not fail at boot (`tools/firmware-check.sh` checks that such a build fails).
//!
//! At boot, after the model's validation (CRC included), runs the model file's
//! self-test (`Model::self_test`) and prints `SELF_TEST ok cases=<n>`, or
//! `SELF_TEST FAILED <first mismatch>` and exits with failure (`SELF_TEST absent` and
//! on, for a file without golden cases).
//!
//! Then prints one line per sentence,
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

#[cfg(not(feature = "defmt"))]
use core::fmt::Write as _;
use cortex_m_rt::entry;
use cortex_m_semihosting::debug;
#[cfg(not(feature = "defmt"))]
use cortex_m_semihosting::hio;
#[cfg(feature = "defmt")]
use defmt_semihosting as _;
use tinyformer::kernels::argmax::argmax;
use tinyformer::model::probabilities_q15;
use tinyformer::{Input, Model, StaticArena};

#[cfg(feature = "alloc")]
extern crate alloc;

#[cfg(feature = "alloc")]
#[global_allocator]
static HEAP: embedded_alloc::LlffHeap = embedded_alloc::LlffHeap::empty();

/// The model, 16-byte aligned in flash.
static MODEL: &[u8] = tinyformer::include_model!(env!("TINYFORMER_MODEL"));

/// The sentences to classify (the host check reads the same file).
const SENTENCES: &str = include_str!("../sentences.txt");

/// Longest token sequence this firmware runs (longer texts are truncated): at most
/// the model's `max_seq`, or the arena below does not compile. Set at build time by
/// `TINYFORMER_MAX_TOKENS`.
const MAX_TOKENS: usize = match usize::from_str_radix(env!("TINYFORMER_MAX_TOKENS"), 10) {
    Ok(n) => n,
    Err(_) => panic!("TINYFORMER_MAX_TOKENS is not a number"),
};

/// Working memory of the forward pass, exactly what the model needs at `MAX_TOKENS`
/// tokens (zero-initialized, in `.bss`; handed out once, no `static mut`).
static ARENA: StaticArena<{ tinyformer::arena_bytes(MODEL, MAX_TOKENS) }> = StaticArena::new();
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
struct Out(Option<hio::HostStream>);
/// With `defmt`, the global logger of `defmt-semihosting` owns the output.
#[cfg(feature = "defmt")]
struct Out;

impl Out {
    #[cfg(not(feature = "defmt"))]
    fn open() -> Self {
        Self(hio::hstdout().ok())
    }
    #[cfg(feature = "defmt")]
    fn open() -> Self {
        Self
    }
}

/// One line of output to `$out: &mut Out`. The format strings stay within what both
/// `core::fmt` and defmt accept (positional `{}`, arguments that are `Display` and
/// `defmt::Format`).
#[cfg(not(feature = "defmt"))]
macro_rules! say {
    ($out:expr, $($t:tt)*) => {
        if let Some(o) = $out.0.as_mut() {
            let _ = writeln!(o, $($t)*);
        }
    };
}
#[cfg(feature = "defmt")]
macro_rules! say {
    ($out:expr, $($t:tt)*) => {{
        let _: &mut Out = $out;
        defmt::println!($($t)*);
    }};
}

/// Q15 probabilities as one `RESULT` field, `p0,p1,...`, written straight to the
/// output (no intermediate string).
struct Q15List<'a>(&'a [i32]);

#[cfg(not(feature = "defmt"))]
impl core::fmt::Display for Q15List<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}", p)?;
        }
        Ok(())
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for Q15List<'_> {
    fn format(&self, f: defmt::Formatter<'_>) {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                defmt::write!(f, ",");
            }
            defmt::write!(f, "{}", p);
        }
    }
}

/// A panic (none is expected: the core returns errors as values) prints where it
/// happened, `PANIC <file>:<line>`, and exits with failure. The message is left out:
/// formatting it would link `core::fmt` into the defmt build, which has no other use
/// for it.
#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    cortex_m::interrupt::disable();
    let out = &mut Out::open();
    match info.location() {
        Some(at) => say!(out, "PANIC {}:{}", at.file(), at.line()),
        None => say!(out, "PANIC"),
    }
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::wfi();
    }
}

#[entry]
fn main() -> ! {
    let out = &mut Out::open();
    let status = match run(out) {
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
    // One Q15 probability per label, computed in place from the logits.
    let mut scores = [0i32; MAX_LABELS];
    let probs = match scores.get_mut(..model.config().num_labels as usize) {
        Some(probs) if !probs.is_empty() => probs,
        _ => return Err("model is not a classifier this firmware can print"),
    };
    let arena = ARENA.take().ok_or("arena taken twice")?;
    // The compiler sized the arena from the header; the validated model's plan agrees.
    let needed = arena.len();
    if model.arena_bytes(MAX_TOKENS) != Ok(needed) {
        return Err("the compile-time arena size differs from the model's plan");
    }

    // Boot self-test: the golden cases the converter stored in the model file, rerun
    // here and compared bit for bit. Catches what the CRC cannot: a miscompiled or
    // wrongly selected kernel, a wrong target feature, arena RAM that does not hold
    // what was written.
    match model.self_test(arena) {
        Ok(()) => say!(
            out,
            "SELF_TEST ok cases={}",
            model.file().self_test_cases().count()
        ),
        // An older file without golden cases still runs (converters write them by
        // default; `tools/firmware-check.sh` requires them for the bundled model).
        Err(tinyformer::Error::NoSelfTest) => say!(out, "SELF_TEST absent"),
        Err(e) => {
            say!(out, "SELF_TEST FAILED {}", e);
            return Err("boot self-test failed");
        }
    }

    #[cfg(feature = "alloc")]
    let mut results = alloc::vec::Vec::new();
    for (index, text) in SENTENCES
        .lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
    {
        // (`get`, not indexing, here and in the core: no panic path is linked.)
        let mut ids = [0u32; MAX_TOKENS];
        let encoding = model
            .tokenizer()
            .encode(text.as_bytes(), &mut ids)
            .map_err(|_| "tokenizer")?;
        let ids = ids.get(..encoding.len).ok_or("tokenizer")?;
        tinyformer_inference_begin();
        model
            .forward_fixed(Input::new(ids), arena, probs)
            .map_err(|_| "forward pass")?;
        probabilities_q15(probs);
        tinyformer_inference_end();
        let label = model.label(argmax(probs)).unwrap_or("?");
        say!(
            out,
            "RESULT {} {} {} {}",
            index,
            label,
            Q15List(probs),
            text
        );
        say!(out, "TOKENS {} {}", index, encoding.len);
        #[cfg(feature = "alloc")]
        results.push(argmax(probs) as u8);
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
        "FOOTPRINT model_bytes={} arena_bytes={} max_tokens={} stack_peak_bytes={}",
        MODEL.len(),
        needed,
        MAX_TOKENS,
        stack_peak(bottom, limit)
    );
    Ok(())
}
