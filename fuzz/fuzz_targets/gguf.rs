//! The GGUF reader (`tinyformer_cli::gguf`) on arbitrary bytes: parsing is Ok or an
//! error, never a panic or an allocation the input does not pay for; a file that parses
//! has every metadata value read through the generic and the typed getters, and every
//! tensor checked against the input and dequantized (Ok for the supported types, with
//! one f32 per element; an error naming the type for the others). A file that reads as
//! a Llama with a SentencePiece vocabulary (`tinyformer_cli::gguf_llama`) is then
//! converted to an f32 decoder file, which must validate.
//!
//! Input: the bytes of a GGUF file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinyformer_cli::gguf::{GgmlType, Gguf, Value};
use tinyformer_cli::gguf_llama::{tokenizer_section, GgufLlama};

fuzz_target!(|data: &[u8]| {
    let g = match Gguf::parse(data) {
        Ok(g) => g,
        Err(e) => {
            let _ = format!("{e:#}");
            return;
        }
    };
    for (key, value) in g.metadata() {
        // The same entry, not an equal value (NaN is unequal to itself).
        assert!(std::ptr::eq(g.get(key).unwrap(), value), "{key}");
        // Each getter either fits the value's type or names the key.
        let typed = [
            g.u32(key).err(),
            g.f32(key).err(),
            g.str(key).err(),
            g.str_array(key).err(),
            g.f32_array(key).err(),
            g.i32_array(key).err(),
        ];
        for e in typed.into_iter().flatten() {
            assert!(format!("{e:#}").contains(key), "{e:#}");
        }
        if let Value::Array(a) = value {
            assert_eq!(a.iter().count(), a.len(), "{key}");
        }
    }
    for t in g.tensors() {
        assert_eq!(data.get(t.range.clone()), Some(t.data), "{}", t.name);
        assert!(std::ptr::eq(g.tensor(t.name).unwrap(), t), "{}", t.name);
        let supported = matches!(
            t.ggml_type,
            GgmlType::F32 | GgmlType::F16 | GgmlType::Q8_0 | GgmlType::Q4_0 | GgmlType::Q4_1
        );
        match t.dequantize() {
            Ok(v) => {
                assert!(supported, "{}", t.name);
                assert_eq!(v.len() as u64, t.n_elements, "{}", t.name);
            }
            Err(e) => {
                assert!(!supported, "{}: {e:#}", t.name);
                assert!(format!("{e:#}").contains(t.name), "{e:#}");
            }
        }
    }
    let (src, section) = match (GgufLlama::from_gguf(&g), tokenizer_section(&g)) {
        (Ok(src), Ok(section)) => (src, section),
        (Err(e), _) | (_, Err(e)) => {
            let _ = format!("{e:#}");
            return;
        }
    };
    match tinyformer_cli::decoder::convert_float(&src, &section, false, None) {
        Ok(bytes) => {
            let buf = tinyformer::format::writer::AlignedBuf::from_bytes(&bytes);
            if let Err(e) = tinyformer::Decoder::from_bytes(buf.as_bytes()) {
                panic!("converter wrote a decoder that does not validate: {e}");
            }
        }
        Err(e) => {
            let _ = format!("{e:#}");
        }
    }
});
