//! Arbitrary bytes as a model file: validation must answer Ok or an error, never panic;
//! a file that passes must have working accessors. A file that fails only on its CRC
//! is validated again with the CRC repaired, so the accessors also see mutated files.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinyformer::format::{FormatError, ModelFile};
use tinyformer::Model;
use tinyformer_fuzz::{aligned, fix_crc, touch_model};

fuzz_target!(|data: &[u8]| {
    let mut buf = aligned(data);
    let first = ModelFile::from_bytes(buf.as_bytes());
    // The misaligned case: refused up front, whatever the bytes.
    if data.len() > 1 {
        let shifted = aligned(&[&[0u8][..], data].concat());
        assert!(matches!(
            ModelFile::from_bytes(&shifted.as_bytes()[1..]),
            Err(FormatError::BufferMisaligned { addr_mod: 1 })
        ));
    }
    let result = match first {
        Err(FormatError::ChecksumMismatch { .. }) => {
            fix_crc(buf.as_bytes_mut());
            Model::from_bytes(buf.as_bytes())
        }
        Err(e) => {
            let _ = e.to_string();
            return;
        }
        Ok(_) => Model::from_bytes(buf.as_bytes()),
    };
    match result {
        Ok(model) => touch_model(&model),
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
