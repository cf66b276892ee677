//! The model-file writer (feature `alloc`): the reader's twin, so the two cannot drift.

use super::{
    dir, header, tensor_count, tensor_spec, Config, FormatError, TensorKind, ALIGN, DIR_ENTRY_LEN,
    HEADER_LEN, MAGIC, MODEL_LEVEL, VERSION,
};
use alloc::vec::Vec;

/// One tensor's payload, little-endian, in the layout its spec requires.
#[derive(Clone, Copy, Debug)]
pub struct TensorData<'d> {
    /// Kind.
    pub kind: TensorKind,
    /// Layer, `None` for model-level tensors.
    pub layer: Option<u16>,
    /// Payload bytes.
    pub bytes: &'d [u8],
}

impl<'d> TensorData<'d> {
    /// Views of owned payloads `(kind, layer, bytes)`, in the same order.
    pub fn borrow_all(payloads: &'d [(TensorKind, Option<u16>, Vec<u8>)]) -> Vec<Self> {
        payloads
            .iter()
            .map(|(kind, layer, bytes)| Self {
                kind: *kind,
                layer: *layer,
                bytes,
            })
            .collect()
    }
}

fn put_u32(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u16(buf: &mut [u8], at: usize, v: u16) {
    buf[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

fn pad_to(buf: &mut Vec<u8>, align: usize) {
    while !buf.len().is_multiple_of(align) {
        buf.push(0);
    }
}

fn offset_u32(at: usize) -> Result<u32, FormatError> {
    u32::try_from(at).map_err(|_| FormatError::ConfigOutOfRange {
        field: "file_len",
        value: u32::MAX,
    })
}

/// Serialises a model: header, directory, tokenizer section, labels, then every tensor
/// the config requires in canonical order (each 16-byte aligned), and the CRC-32.
///
/// `tensors` may be in any order; each tensor the config requires must appear exactly
/// with the spec's byte length. `labels` must have `config.num_labels` entries.
pub fn write_model(
    config: &Config,
    tokenizer_section: &[u8],
    labels: &[&str],
    tensors: &[TensorData<'_>],
) -> Result<Vec<u8>, FormatError> {
    config.check()?;
    if labels.len() != config.num_labels as usize {
        return Err(FormatError::BadLabels {
            index: labels.len() as u32,
        });
    }
    let count = tensor_count(config);
    let mut out = alloc::vec![0u8; HEADER_LEN + count * DIR_ENTRY_LEN];

    let h = &mut out[..HEADER_LEN];
    h[header::MAGIC..header::MAGIC + 4].copy_from_slice(&MAGIC);
    put_u16(h, header::VERSION, VERSION);
    put_u32(h, header::HEADER_LEN, HEADER_LEN as u32);
    put_u32(h, header::TENSOR_COUNT, count as u32);
    put_u32(h, header::DIR_OFFSET, HEADER_LEN as u32);
    h[header::ARCH] = config.arch as u8;
    h[header::WEIGHT_DTYPE] = config.weight_dtype as u8;
    h[header::ACTIVATION] = config.activation as u8;
    h[header::POOLING] = config.pooling as u8;
    for (at, v) in [
        (header::VOCAB_SIZE, config.vocab_size),
        (header::HIDDEN, config.hidden),
        (header::LAYERS, config.layers),
        (header::HEADS, config.heads),
        (header::FFN, config.ffn),
        (header::MAX_POSITIONS, config.max_positions),
        (header::TYPE_VOCAB, config.type_vocab),
        (header::NUM_LABELS, config.num_labels),
        (header::MAX_SEQ, config.max_seq),
        (header::LAYER_NORM_EPS, config.layer_norm_eps_bits),
    ] {
        put_u32(h, at, v);
    }
    if let Some(d) = config.decoder {
        for (at, v) in [
            (header::KV_HEADS, d.kv_heads),
            (header::ROPE_THETA, d.rope_theta_bits),
            (header::BOS_ID, d.bos_id),
            (header::EOS_ID, d.eos_id),
            (header::DECODER_FLAGS, u32::from(d.separate_output)),
        ] {
            put_u32(h, at, v);
        }
    }

    // Tokenizer section.
    pad_to(&mut out, 4);
    let tok_offset = offset_u32(out.len())?;
    out.extend_from_slice(tokenizer_section);
    put_u32(&mut out, header::TOKENIZER_OFFSET, tok_offset);
    put_u32(
        &mut out,
        header::TOKENIZER_LEN,
        offset_u32(tokenizer_section.len())?,
    );

    // Labels section: count, count + 1 offsets (relative to the section), names.
    pad_to(&mut out, 4);
    let lab_offset = out.len();
    let table = (labels.len() + 2) * 4;
    out.extend_from_slice(&(labels.len() as u32).to_le_bytes());
    let mut at = table;
    out.extend_from_slice(&(at as u32).to_le_bytes());
    for l in labels {
        at += l.len();
        out.extend_from_slice(&offset_u32(at)?.to_le_bytes());
    }
    for l in labels {
        out.extend_from_slice(l.as_bytes());
    }
    put_u32(&mut out, header::LABELS_OFFSET, offset_u32(lab_offset)?);
    let lab_len = offset_u32(out.len() - lab_offset)?;
    put_u32(&mut out, header::LABELS_LEN, lab_len);

    // Tensors.
    for index in 0..count {
        let Some(spec) = tensor_spec(config, index) else {
            break;
        };
        let data = tensors
            .iter()
            .find(|t| t.kind == spec.kind && t.layer == spec.layer)
            .ok_or(FormatError::MissingTensor {
                kind: spec.kind as u16,
                layer: spec.layer.unwrap_or(MODEL_LEVEL),
            })?;
        if data.bytes.len() as u64 != spec.byte_len() {
            return Err(FormatError::ByteLengthMismatch {
                index: index as u32,
                expected: u32::try_from(spec.byte_len()).unwrap_or(u32::MAX),
                found: u32::try_from(data.bytes.len()).unwrap_or(u32::MAX),
            });
        }
        pad_to(&mut out, ALIGN);
        let offset = offset_u32(out.len())?;
        out.extend_from_slice(data.bytes);
        let e = HEADER_LEN + index * DIR_ENTRY_LEN;
        let entry = &mut out[e..e + DIR_ENTRY_LEN];
        put_u16(entry, dir::KIND, spec.kind as u16);
        put_u16(entry, dir::LAYER, spec.layer.unwrap_or(MODEL_LEVEL));
        entry[dir::DTYPE] = spec.dtype as u8;
        entry[dir::RANK] = spec.rank;
        put_u32(entry, dir::DIM0, spec.dims[0]);
        put_u32(entry, dir::DIM1, spec.dims[1]);
        put_u32(entry, dir::OFFSET, offset);
        put_u32(entry, dir::LEN, data.bytes.len() as u32);
    }
    let file_len = offset_u32(out.len())?;
    put_u32(&mut out, header::FILE_LEN, file_len);
    let crc = super::file_crc32(&out);
    put_u32(&mut out, header::CRC32, crc);
    Ok(out)
}

/// Inserts `section` (from [`super::self_test::encode_section`]) as the self-test
/// section of the model file `file`, which must be valid and have none: the section
/// goes right after the labels section (4-byte aligned), the tensor payloads move by a
/// multiple of 16 bytes (their directory offsets with them), and the header's
/// self-test fields, file length and CRC are updated. Every other byte is unchanged.
/// The result is validated, so a section that does not fit the config is refused.
pub fn with_self_test(file: &[u8], section: &[u8]) -> Result<Vec<u8>, FormatError> {
    let input = AlignedBuf::from_bytes(file);
    let model = super::ModelFile::from_bytes(input.as_bytes())?;
    if model.self_test_cases().next().is_some() {
        return Err(FormatError::BadSelfTest {
            field: "section already present",
            case: 0,
            value: super::read_u32(file, header::SELF_TEST_LEN).unwrap_or(0),
        });
    }
    let word = |at| super::read_u32(file, at).unwrap_or(0) as usize;
    let labels_end = word(header::LABELS_OFFSET) + word(header::LABELS_LEN);
    let tensors_start = match model.tensor_info(0) {
        Some(info) => info.offset as usize,
        None => file.len(),
    };
    let section_offset = labels_end.next_multiple_of(4);
    // Files from `write_model` start their tensors at the next 16 bytes after the
    // labels; a file with a gap keeps its tensors where they are if the section fits.
    let new_start = (section_offset + section.len())
        .next_multiple_of(ALIGN)
        .max(tensors_start);
    let shift = offset_u32(new_start - tensors_start)?;

    let mut out = Vec::with_capacity(file.len() + shift as usize);
    out.extend_from_slice(&file[..labels_end]);
    pad_to(&mut out, 4);
    out.extend_from_slice(section);
    out.resize(new_start, 0);
    out.extend_from_slice(&file[tensors_start..]);
    let dir_offset = word(header::DIR_OFFSET);
    for index in 0..model.tensor_count() as usize {
        let at = dir_offset + index * DIR_ENTRY_LEN + dir::OFFSET;
        let offset = super::read_u32(&out, at).unwrap_or(0);
        put_u32(&mut out, at, offset + shift);
    }
    put_u32(
        &mut out,
        header::SELF_TEST_OFFSET,
        offset_u32(section_offset)?,
    );
    put_u32(&mut out, header::SELF_TEST_LEN, offset_u32(section.len())?);
    let file_len = offset_u32(out.len())?;
    put_u32(&mut out, header::FILE_LEN, file_len);
    let crc = super::file_crc32(&out);
    put_u32(&mut out, header::CRC32, crc);
    super::ModelFile::from_bytes(AlignedBuf::from_bytes(&out).as_bytes())?;
    Ok(out)
}

/// A byte buffer whose start is 16-byte aligned, as [`super::ModelFile::from_bytes`]
/// requires: a `Vec<u8>` only guarantees the allocator's alignment.
pub struct AlignedBuf {
    chunks: Vec<Chunk>,
    len: usize,
}

/// Sixteen bytes aligned to 16 on every target. (`u128` is not: its alignment is 8 on
/// 32-bit Arm, for one.)
#[derive(Clone, Copy)]
#[repr(C, align(16))]
struct Chunk([u8; 16]);

// Checked on every target the crate is built for, 32-bit ones included.
const _: () =
    assert!(core::mem::size_of::<Chunk>() == ALIGN && core::mem::align_of::<Chunk>() == ALIGN);

// SAFETY: `Chunk` is sixteen bytes with no padding (size 16 = the array, asserted
// above); every bit pattern is a valid `[u8; 16]`, and all zeros is one.
unsafe impl bytemuck::Zeroable for Chunk {}
// SAFETY: as above; `Copy`, `'static` and `repr(C)`.
unsafe impl bytemuck::Pod for Chunk {}

impl AlignedBuf {
    /// Copies `bytes` into a 16-byte aligned buffer.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        let mut chunks = alloc::vec![Chunk([0; 16]); bytes.len().div_ceil(ALIGN)];
        bytemuck::cast_slice_mut::<Chunk, u8>(&mut chunks)[..bytes.len()].copy_from_slice(bytes);
        Self {
            chunks,
            len: bytes.len(),
        }
    }
    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &bytemuck::cast_slice::<Chunk, u8>(&self.chunks)[..self.len]
    }
    /// The bytes, mutable.
    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        &mut bytemuck::cast_slice_mut::<Chunk, u8>(&mut self.chunks)[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_buf_starts_on_16_bytes_and_keeps_the_bytes() {
        for len in [0, 1, 15, 16, 17, 33, 1000] {
            let bytes: Vec<u8> = (0..len).map(|i| i as u8 ^ 0xA5).collect();
            // Several buffers alive at once, so not every one is the allocator's first.
            let bufs: Vec<AlignedBuf> = (0..4).map(|_| AlignedBuf::from_bytes(&bytes)).collect();
            for mut buf in bufs {
                assert_eq!(buf.as_bytes().as_ptr() as usize % ALIGN, 0, "len {len}");
                assert_eq!(buf.as_bytes(), &bytes[..]);
                if len > 0 {
                    buf.as_bytes_mut()[len - 1] ^= 0xFF;
                    assert_eq!(buf.as_bytes()[len - 1], bytes[len - 1] ^ 0xFF);
                }
            }
        }
    }
}
