//! Helpers shared by the integration tests that forge model files
//! (`tests/format.rs`, `tests/properties.rs`).

use tinyformer::format::{file_crc32, header, HEADER_LEN};

/// Rewrites the header CRC so that it matches the bytes (no-op on a buffer shorter
/// than the header): a forged file, so that a test reaches the check it means to test
/// instead of stopping at the checksum, which is verified last and covers every byte.
pub fn restamp_crc(bytes: &mut [u8]) {
    if bytes.len() < HEADER_LEN {
        return;
    }
    let crc = file_crc32(bytes);
    bytes[header::CRC32..header::CRC32 + 4].copy_from_slice(&crc.to_le_bytes());
}
