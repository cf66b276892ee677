//! Reading a llama2.c model checkpoint (the version-0 layout that llama2.c's `run.c`
//! reads in `read_checkpoint` and `memory_map_weights`).
//!
//! # File layout
//!
//! All values little-endian. A 28-byte header of seven `i32`:
//! `dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len`; a negative
//! `vocab_size` means the output classifier `wcls` is stored (unshared) and its magnitude
//! is the vocabulary size; a positive one means the classifier is the token embedding.
//! Then `f32` tensors, back to back, each with all layers together (layer-major):
//!
//! | tensor | per layer | shape (rows, columns) |
//! |---|---|---|
//! | `token_embedding_table` | no | (`vocab_size`, `dim`) |
//! | `rms_att_weight` | yes | (`dim`) |
//! | `wq` | yes | (`dim`, `dim`) |
//! | `wk` | yes | (`kv_dim`, `dim`) |
//! | `wv` | yes | (`kv_dim`, `dim`) |
//! | `wo` | yes | (`dim`, `dim`) |
//! | `rms_ffn_weight` | yes | (`dim`) |
//! | `w1` | yes | (`hidden_dim`, `dim`) |
//! | `w2` | yes | (`dim`, `hidden_dim`) |
//! | `w3` | yes | (`hidden_dim`, `dim`) |
//! | `rms_final_weight` | no | (`dim`) |
//! | `freq_cis_real` | no | (`seq_len`, `head_size / 2`), legacy, skipped |
//! | `freq_cis_imag` | no | (`seq_len`, `head_size / 2`), legacy, skipped |
//! | `wcls` | no | (`vocab_size`, `dim`), only when unshared |
//!
//! where `head_size = dim / n_heads` and `kv_dim = n_kv_heads * head_size` (so the
//! query width `n_heads * head_size` is `dim`).
//!
//! **Every matrix is row-major with one row per output** (PyTorch's `nn.Linear`
//! `[out_features, in_features]`): `run.c`'s `matmul(xout, x, w, n, d)` computes
//! `xout[i] = sum_j w[i * n + j] * x[j]` for `i < d` outputs over `n` inputs, and is
//! called as `matmul(q, xb, wq, dim, dim)`, `matmul(k, xb, wk, dim, kv_dim)`,
//! `matmul(xb2, xb, wo, dim, dim)`, `matmul(hb, xb, w1, dim, hidden_dim)`,
//! `matmul(xb, hb, w2, hidden_dim, dim)`, `matmul(logits, x, wcls, dim, vocab_size)`.
//! (`run.c`'s struct comments list `wq` as `(layer, dim, n_heads * head_size)`, the
//! other way round; the calls above are what the bytes mean.) The token embedding is
//! one row of `dim` per token, which is also why it can serve as the classifier.
//!
//! # Reading
//!
//! Every header field is checked against the runtime's format limits
//! ([`tinyformer::format::limits`]) and the shape rules before anything is sized from
//! it; the file length the header implies (checked `u64` arithmetic) must equal the real
//! length before the weights are read, so a truncated file, trailing bytes and a header
//! implying an absurd size are errors without allocating. The weights are then read
//! into one `Vec<f32>` (memory: the file size) and every weight must be finite.
//! Tensor access afterwards is infallible.

use anyhow::{bail, Context, Result};
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::Path;
use tinyformer::format::limits::{
    MAX_FFN, MAX_HEAD_DIM, MAX_HIDDEN, MAX_LAYERS, MAX_POSITIONS, MAX_VOCAB,
};

/// Length of the header: seven little-endian `i32`.
pub const HEADER_LEN: usize = 28;

/// The header of a llama2.c checkpoint, validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Llama2cConfig {
    /// Model width (`dim`): residual stream, embedding rows, query width.
    pub dim: u32,
    /// FFN width (`hidden_dim`) of the SwiGLU block.
    pub hidden_dim: u32,
    /// Number of transformer blocks (`n_layers`).
    pub layers: u32,
    /// Number of query heads (`n_heads`); divides `dim`.
    pub heads: u32,
    /// Number of key/value heads (`n_kv_heads`); divides `heads`.
    pub kv_heads: u32,
    /// Vocabulary size (the magnitude of the stored `vocab_size`).
    pub vocab_size: u32,
    /// Longest sequence the model was trained for (`seq_len`).
    pub seq_len: u32,
    /// The classifier is the token embedding (stored `vocab_size` positive); otherwise
    /// a separate `wcls` follows the other tensors.
    pub shared_classifier: bool,
}

/// Why a llama2.c checkpoint was refused. The host wraps it with the file name.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum Llama2cError {
    /// The file is shorter than the header.
    TruncatedHeader {
        /// File length in bytes.
        len: u64,
    },
    /// A header field is outside its range (for `vocab_size`, its magnitude).
    OutOfRange {
        /// Header field name as in llama2.c's `Config`.
        field: &'static str,
        /// The stored value.
        value: i64,
        /// Smallest allowed value.
        min: u32,
        /// Largest allowed value.
        max: u32,
    },
    /// A header field does not divide another (`n_heads` into `dim`, `n_kv_heads` into
    /// `n_heads`).
    DoesNotDivide {
        /// The divisor's field name.
        field: &'static str,
        /// The divisor.
        value: u32,
        /// The dividend's field name.
        of: &'static str,
        /// The dividend.
        of_value: u32,
    },
    /// `dim / n_heads` is odd: RoPE rotates adjacent pairs of each head.
    OddHeadSize {
        /// `dim / n_heads`.
        head_size: u32,
    },
    /// The size the header implies does not fit `u64` bytes or this host's `usize`.
    SizeOverflow,
    /// The file length differs from the length the header implies.
    LengthMismatch {
        /// Length implied by the header, bytes.
        expected: u64,
        /// Actual length, bytes.
        actual: u64,
        /// Whether the header said the classifier is shared (no `wcls` expected).
        shared_classifier: bool,
    },
    /// A weight is NaN or infinite.
    NonFinite {
        /// Tensor name as in llama2.c's `TransformerWeights`.
        tensor: &'static str,
        /// Layer, for per-layer tensors.
        layer: Option<u32>,
        /// Element index within the tensor (of that layer).
        index: usize,
        /// `index` as (row, column) of the tensor's row-major layout.
        row: usize,
        /// See `row`.
        column: usize,
        /// The value.
        value: f32,
    },
}

impl fmt::Display for Llama2cError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::TruncatedHeader { len } => write!(
                f,
                "file is {len} bytes, shorter than the {HEADER_LEN}-byte llama2.c header"
            ),
            Self::OutOfRange {
                field,
                value,
                min,
                max,
            } => {
                write!(
                    f,
                    "header field `{field}`: {value} is outside {min}..={max}"
                )?;
                if field == "vocab_size" && value < 0 {
                    write!(f, " in magnitude (negative means an unshared classifier)")?;
                }
                Ok(())
            }
            Self::DoesNotDivide {
                field,
                value,
                of,
                of_value,
            } => write!(
                f,
                "header field `{field}`: {value} does not divide `{of}` ({of_value})"
            ),
            Self::OddHeadSize { head_size } => write!(
                f,
                "header fields `dim` / `n_heads`: head size {head_size} is odd (RoPE rotates pairs)"
            ),
            Self::SizeOverflow => write!(
                f,
                "the header implies more bytes than this host can address"
            ),
            Self::LengthMismatch {
                expected,
                actual,
                shared_classifier,
            } => {
                let what = if actual < expected {
                    "truncated"
                } else {
                    "trailing bytes"
                };
                let classifier = if shared_classifier {
                    "shared classifier"
                } else {
                    "unshared classifier `wcls` (negative `vocab_size`)"
                };
                write!(
                    f,
                    "{what}: file is {actual} bytes, the header implies {expected} ({classifier})"
                )
            }
            Self::NonFinite {
                tensor,
                layer,
                index,
                row,
                column,
                value,
            } => {
                write!(f, "tensor `{tensor}`")?;
                if let Some(layer) = layer {
                    write!(f, " (layer {layer})")?;
                }
                write!(
                    f,
                    ": non-finite value {value} at element {index} (row {row}, column {column})"
                )
            }
        }
    }
}

impl std::error::Error for Llama2cError {}

/// The tensors of the file, in file order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tensor {
    TokenEmbedding,
    RmsAtt,
    Wq,
    Wk,
    Wv,
    Wo,
    RmsFfn,
    W1,
    W2,
    W3,
    RmsFinal,
    FreqCisReal,
    FreqCisImag,
    Wcls,
}

impl Tensor {
    const ALL: [Self; 14] = [
        Self::TokenEmbedding,
        Self::RmsAtt,
        Self::Wq,
        Self::Wk,
        Self::Wv,
        Self::Wo,
        Self::RmsFfn,
        Self::W1,
        Self::W2,
        Self::W3,
        Self::RmsFinal,
        Self::FreqCisReal,
        Self::FreqCisImag,
        Self::Wcls,
    ];

    /// The name in llama2.c's `TransformerWeights` (and its export script).
    fn name(self) -> &'static str {
        match self {
            Self::TokenEmbedding => "token_embedding_table",
            Self::RmsAtt => "rms_att_weight",
            Self::Wq => "wq",
            Self::Wk => "wk",
            Self::Wv => "wv",
            Self::Wo => "wo",
            Self::RmsFfn => "rms_ffn_weight",
            Self::W1 => "w1",
            Self::W2 => "w2",
            Self::W3 => "w3",
            Self::RmsFinal => "rms_final_weight",
            Self::FreqCisReal => "freq_cis_real",
            Self::FreqCisImag => "freq_cis_imag",
            Self::Wcls => "wcls",
        }
    }

    fn per_layer(self) -> bool {
        matches!(
            self,
            Self::RmsAtt
                | Self::Wq
                | Self::Wk
                | Self::Wv
                | Self::Wo
                | Self::RmsFfn
                | Self::W1
                | Self::W2
                | Self::W3
        )
    }

    /// (rows, columns) of one instance (one layer's) in the file; `None` when a size
    /// overflows `u64` or `n_heads` is 0 (only for an unchecked config). Rows are
    /// outputs for the matrices (see the module docs); `wcls` has no rows when shared.
    fn shape(self, c: &Llama2cConfig) -> Option<(u64, u64)> {
        let dim = u64::from(c.dim);
        let hidden = u64::from(c.hidden_dim);
        let vocab = u64::from(c.vocab_size);
        let head_size = dim.checked_div(u64::from(c.heads))?;
        let kv_dim = u64::from(c.kv_heads).checked_mul(head_size)?;
        Some(match self {
            Self::TokenEmbedding => (vocab, dim),
            Self::RmsAtt | Self::RmsFfn | Self::RmsFinal => (1, dim),
            Self::Wq | Self::Wo => (dim, dim),
            Self::Wk | Self::Wv => (kv_dim, dim),
            Self::W1 | Self::W3 => (hidden, dim),
            Self::W2 => (dim, hidden),
            Self::FreqCisReal | Self::FreqCisImag => (u64::from(c.seq_len), head_size / 2),
            Self::Wcls if c.shared_classifier => (0, dim),
            Self::Wcls => (vocab, dim),
        })
    }

    /// Elements of one instance and of all instances (every layer), checked.
    fn counts(self, c: &Llama2cConfig) -> Option<(u64, u64)> {
        let (rows, cols) = self.shape(c)?;
        let one = rows.checked_mul(cols)?;
        let all = if self.per_layer() {
            one.checked_mul(u64::from(c.layers))?
        } else {
            one
        };
        Some((one, all))
    }
}

impl Llama2cConfig {
    /// Parses and checks the header (the first [`HEADER_LEN`] bytes of `bytes`).
    ///
    /// Ranges: `dim` 1..=`MAX_HIDDEN`, `hidden_dim` 1..=`MAX_FFN`, `n_layers`
    /// 1..=`MAX_LAYERS`, `n_heads` 1..=`dim`, `n_kv_heads` 1..=`n_heads`, `|vocab_size|`
    /// 1..=`MAX_VOCAB`, `seq_len` 1..=`MAX_POSITIONS`, head size 2..=`MAX_HEAD_DIM`
    /// (the runtime's format limits); `n_heads` divides `dim`, `n_kv_heads` divides
    /// `n_heads`, and the head size is even.
    pub fn from_header(bytes: &[u8]) -> Result<Self, Llama2cError> {
        let header: &[u8; HEADER_LEN] = bytes
            .get(..HEADER_LEN)
            .and_then(|h| h.try_into().ok())
            .ok_or(Llama2cError::TruncatedHeader {
                len: bytes.len() as u64,
            })?;
        // In bounds: `header` holds HEADER_LEN bytes, seven words.
        let field = |i: usize| crate::le::i32_at(&header[4 * i..]).unwrap_or(0);
        let check = |name: &'static str, value: i32, min: u32, max: u32| match u32::try_from(value)
        {
            Ok(v) if (min..=max).contains(&v) => Ok(v),
            _ => Err(Llama2cError::OutOfRange {
                field: name,
                value: i64::from(value),
                min,
                max,
            }),
        };
        let dim = check("dim", field(0), 1, MAX_HIDDEN)?;
        let hidden_dim = check("hidden_dim", field(1), 1, MAX_FFN)?;
        let layers = check("n_layers", field(2), 1, MAX_LAYERS)?;
        let heads = check("n_heads", field(3), 1, dim)?;
        let kv_heads = check("n_kv_heads", field(4), 1, heads)?;
        let stored_vocab = field(5);
        let vocab_size = match stored_vocab.unsigned_abs() {
            v @ 1..=MAX_VOCAB => v,
            _ => {
                return Err(Llama2cError::OutOfRange {
                    field: "vocab_size",
                    value: i64::from(stored_vocab),
                    min: 1,
                    max: MAX_VOCAB,
                })
            }
        };
        let seq_len = check("seq_len", field(6), 1, MAX_POSITIONS)?;
        if !dim.is_multiple_of(heads) {
            return Err(Llama2cError::DoesNotDivide {
                field: "n_heads",
                value: heads,
                of: "dim",
                of_value: dim,
            });
        }
        if !heads.is_multiple_of(kv_heads) {
            return Err(Llama2cError::DoesNotDivide {
                field: "n_kv_heads",
                value: kv_heads,
                of: "n_heads",
                of_value: heads,
            });
        }
        let head_size = dim / heads;
        if head_size > MAX_HEAD_DIM {
            return Err(Llama2cError::OutOfRange {
                field: "dim / n_heads",
                value: i64::from(head_size),
                min: 2,
                max: MAX_HEAD_DIM,
            });
        }
        if !head_size.is_multiple_of(2) {
            return Err(Llama2cError::OddHeadSize { head_size });
        }
        Ok(Self {
            dim,
            hidden_dim,
            layers,
            heads,
            kv_heads,
            vocab_size,
            seq_len,
            shared_classifier: stored_vocab > 0,
        })
    }

    /// Width of one attention head, `dim / heads`.
    pub fn head_size(&self) -> usize {
        (self.dim / self.heads) as usize
    }

    /// Width of the key and value projections, `kv_heads * head_size`.
    pub fn kv_dim(&self) -> usize {
        self.kv_heads as usize * self.head_size()
    }

    /// The file length this header implies, bytes; `None` if it overflows `u64` (or
    /// `heads` is 0), which only an unchecked config can do.
    pub fn file_len(&self) -> Option<u64> {
        let mut floats = 0u64;
        for t in Tensor::ALL {
            floats = floats.checked_add(t.counts(self)?.1)?;
        }
        floats.checked_mul(4)?.checked_add(HEADER_LEN as u64)
    }
}

/// One layer's weights, borrowed from a [`Llama2cCheckpoint`]. Matrices are row-major
/// with one row per output (see the module docs).
#[derive(Clone, Copy, Debug)]
pub struct Llama2cLayer<'a> {
    /// RMSNorm gain before attention, `[dim]`.
    pub rms_att: &'a [f32],
    /// Query projection, `[dim][dim]` (rows: `heads * head_size` outputs).
    pub wq: &'a [f32],
    /// Key projection, `[kv_dim][dim]`.
    pub wk: &'a [f32],
    /// Value projection, `[kv_dim][dim]`.
    pub wv: &'a [f32],
    /// Attention output projection, `[dim][dim]` (columns: `heads * head_size` inputs).
    pub wo: &'a [f32],
    /// RMSNorm gain before the FFN, `[dim]`.
    pub rms_ffn: &'a [f32],
    /// FFN gate projection (through SiLU), `[hidden_dim][dim]`.
    pub w1: &'a [f32],
    /// FFN down projection, `[dim][hidden_dim]`.
    pub w2: &'a [f32],
    /// FFN up projection (multiplies the gate), `[hidden_dim][dim]`.
    pub w3: &'a [f32],
}

/// A llama2.c checkpoint: the validated header and every weight, as `f32`.
#[derive(Clone, Debug)]
pub struct Llama2cCheckpoint {
    /// The header.
    pub config: Llama2cConfig,
    /// Everything after the header in file order, as `f32` (legacy RoPE tables
    /// included but not exposed).
    data: Vec<f32>,
    /// Start of each tensor in `data` (all layers), indexed by `Tensor as usize`.
    starts: [usize; Tensor::ALL.len()],
    /// Elements of one instance (one layer's) of each tensor.
    lens: [usize; Tensor::ALL.len()],
}

impl Llama2cCheckpoint {
    /// Parses and checks a checkpoint held in memory (the whole file). Errors as for
    /// [`read_llama2c`], without the file name.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Llama2cError> {
        let config = Llama2cConfig::from_header(bytes)?;
        check_len(&config, bytes.len() as u64)?;
        let data = crate::le::f32s(&bytes[HEADER_LEN..]);
        Self::from_data(config, data)
    }

    /// Lays out the tensors over `data` (whose length [`check_len`] has matched to the
    /// header) and checks that every weight is finite.
    fn from_data(config: Llama2cConfig, data: Vec<f32>) -> Result<Self, Llama2cError> {
        let mut starts = [0; Tensor::ALL.len()];
        let mut lens = [0; Tensor::ALL.len()];
        let mut start = 0usize;
        for t in Tensor::ALL {
            // The total fits `data.len()`, so every part fits `usize`.
            let (one, all) = t.counts(&config).ok_or(Llama2cError::SizeOverflow)?;
            let (one, all) = (to_usize(one)?, to_usize(all)?);
            starts[t as usize] = start;
            lens[t as usize] = one;
            start += all;
        }
        debug_assert_eq!(start, data.len());
        let ckpt = Self {
            config,
            data,
            starts,
            lens,
        };
        ckpt.check_finite()?;
        Ok(ckpt)
    }

    /// Instance `index` (a layer, or 0) of tensor `t`.
    fn tensor(&self, t: Tensor, index: usize) -> &[f32] {
        let len = self.lens[t as usize];
        let start = self.starts[t as usize] + index * len;
        &self.data[start..start + len]
    }

    fn check_finite(&self) -> Result<(), Llama2cError> {
        for t in Tensor::ALL {
            if matches!(t, Tensor::FreqCisReal | Tensor::FreqCisImag) {
                continue; // legacy tables, not read by anyone
            }
            let instances = if t.per_layer() { self.config.layers } else { 1 };
            for i in 0..instances {
                let values = self.tensor(t, i as usize);
                if let Some(index) = values.iter().position(|x| !x.is_finite()) {
                    let columns = t.shape(&self.config).map_or(1, |(_, c)| c as usize);
                    return Err(Llama2cError::NonFinite {
                        tensor: t.name(),
                        layer: t.per_layer().then_some(i),
                        index,
                        row: index / columns,
                        column: index % columns,
                        value: values[index],
                    });
                }
            }
        }
        Ok(())
    }

    /// Token embedding, `[vocab_size][dim]`: row `t` is token `t`'s vector.
    pub fn token_embedding(&self) -> &[f32] {
        self.tensor(Tensor::TokenEmbedding, 0)
    }

    /// Layer `layer`'s weights.
    ///
    /// # Panics
    /// If `layer >= config.layers`.
    pub fn layer(&self, layer: usize) -> Llama2cLayer<'_> {
        assert!(
            layer < self.config.layers as usize,
            "layer {layer} of {}",
            self.config.layers
        );
        Llama2cLayer {
            rms_att: self.tensor(Tensor::RmsAtt, layer),
            wq: self.tensor(Tensor::Wq, layer),
            wk: self.tensor(Tensor::Wk, layer),
            wv: self.tensor(Tensor::Wv, layer),
            wo: self.tensor(Tensor::Wo, layer),
            rms_ffn: self.tensor(Tensor::RmsFfn, layer),
            w1: self.tensor(Tensor::W1, layer),
            w2: self.tensor(Tensor::W2, layer),
            w3: self.tensor(Tensor::W3, layer),
        }
    }

    /// Every layer's weights, in order.
    pub fn layers(&self) -> impl ExactSizeIterator<Item = Llama2cLayer<'_>> + '_ {
        (0..self.config.layers as usize).map(|l| self.layer(l))
    }

    /// Final RMSNorm gain, `[dim]`.
    pub fn rms_final(&self) -> &[f32] {
        self.tensor(Tensor::RmsFinal, 0)
    }

    /// The stored classifier `wcls`, `[vocab_size][dim]`; `None` when it is shared with
    /// the token embedding.
    pub fn wcls(&self) -> Option<&[f32]> {
        (!self.config.shared_classifier).then(|| self.tensor(Tensor::Wcls, 0))
    }

    /// The output classifier, `[vocab_size][dim]`: `wcls`, or the token embedding when
    /// shared.
    pub fn classifier(&self) -> &[f32] {
        self.wcls().unwrap_or_else(|| self.token_embedding())
    }
}

fn to_usize(n: u64) -> Result<usize, Llama2cError> {
    usize::try_from(n).map_err(|_| Llama2cError::SizeOverflow)
}

/// The file must be exactly as long as the header implies.
fn check_len(config: &Llama2cConfig, actual: u64) -> Result<(), Llama2cError> {
    let expected = config.file_len().ok_or(Llama2cError::SizeOverflow)?;
    if actual != expected {
        return Err(Llama2cError::LengthMismatch {
            expected,
            actual,
            shared_classifier: config.shared_classifier,
        });
    }
    Ok(())
}

/// Reads and checks a llama2.c checkpoint file. Errors name the file, and the header
/// field or tensor (see [`Llama2cError`], which the error chain carries).
///
/// The length is checked against the header before the weights are read; memory is one
/// `f32` per weight, i.e. the file size.
pub fn read_llama2c(path: &Path) -> Result<Llama2cCheckpoint> {
    let name = || path.display().to_string();
    let mut file = File::open(path).with_context(|| format!("{}: cannot open", name()))?;
    let meta = file
        .metadata()
        .with_context(|| format!("{}: cannot read metadata", name()))?;
    if !meta.is_file() {
        bail!("{}: not a regular file", name());
    }
    let len = meta.len();
    let mut header = [0u8; HEADER_LEN];
    if len < HEADER_LEN as u64 {
        return Err(Llama2cError::TruncatedHeader { len }).with_context(name);
    }
    file.read_exact(&mut header)
        .with_context(|| format!("{}: cannot read the header", name()))?;
    let config = Llama2cConfig::from_header(&header).with_context(name)?;
    check_len(&config, len).with_context(name)?;
    let floats = to_usize((len - HEADER_LEN as u64) / 4).with_context(name)?;
    let mut data = vec![0f32; floats];
    file.read_exact(bytemuck::cast_slice_mut(&mut data))
        .with_context(|| format!("{}: cannot read the weights", name()))?;
    // The file may have changed since its length was read.
    let mut probe = [0u8; 1];
    if file
        .read(&mut probe)
        .with_context(|| format!("{}: cannot read", name()))?
        != 0
    {
        bail!("{}: file grew while being read", name());
    }
    for x in &mut data {
        *x = f32::from_bits(u32::from_le(x.to_bits())); // a no-op on little-endian hosts
    }
    Llama2cCheckpoint::from_data(config, data).with_context(name)
}
