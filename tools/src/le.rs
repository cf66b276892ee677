//! Little-endian bytes: the one place the host reads words out of checkpoint and
//! tokenizer files (llama2.c, safetensors) and writes tensor payloads.

/// The `i32` in the first four bytes of `bytes`; `None` when there are fewer.
pub fn i32_at(bytes: &[u8]) -> Option<i32> {
    Some(i32::from_le_bytes(word(bytes)?))
}

/// The first four bytes of `bytes`, `None` when there are fewer.
pub fn word(bytes: &[u8]) -> Option<[u8; 4]> {
    bytes.get(..4)?.try_into().ok()
}

/// Every whole 4-byte f32 of `bytes` (a shorter tail is not a value).
pub fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// Every whole f16 of `bytes`, widened to f32.
pub fn f16s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(2)
        .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
        .collect()
}

/// Every whole bf16 of `bytes`, widened to f32.
pub fn bf16s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(2)
        .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
        .collect()
}

/// Every whole f64 of `bytes`, narrowed to f32.
pub fn f64s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(8)
        .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32)
        .collect()
}

/// `v` as little-endian f32 bytes.
pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// `v` rounded to f16, as little-endian bytes.
pub fn f16_bytes(v: &[f32]) -> Vec<u8> {
    v.iter()
        .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
        .collect()
}

/// `v` as little-endian i32 bytes.
pub fn i32_bytes(v: &[i32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let v = [1.5f32, -0.25, 3.0e9];
        assert_eq!(f32s(&f32_bytes(&v)), v);
        assert_eq!(f16s(&f16_bytes(&[1.5, -0.25])), [1.5, -0.25]);
        let ints = i32_bytes(&[-1, 7]);
        assert_eq!((i32_at(&ints), i32_at(&ints[4..])), (Some(-1), Some(7)));
        assert_eq!(i32_at(&ints[5..]), None);
        assert_eq!(f64s(&2.5f64.to_le_bytes()), [2.5]);
        assert_eq!(bf16s(&half::bf16::from_f32(2.0).to_le_bytes()), [2.0]);
        // A tail shorter than a word is not a value.
        assert_eq!(f32s(&[0, 0, 128, 63, 1]), [1.0]);
    }
}
