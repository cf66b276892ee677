//! `inspect`: a model file's config, tensors, sizes, checksum and memory plan, as one
//! [`Inspection`] printed as text or as one JSON object.

use anyhow::{anyhow, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;
use tinyformer::format::{tensor_spec, Config};

use crate::run::ModelBytes;

// The JSON records below declare their fields in alphabetical order: the order the
// output's keys have always had (they were once built as sorted `serde_json` maps).

/// What `inspect --json` prints (one object).
#[derive(Debug, Serialize)]
pub struct Inspection {
    /// Tensor bytes per dtype name.
    pub bytes_per_dtype: BTreeMap<&'static str, u64>,
    /// Always `"ok"`: a file whose checksum fails is an error.
    pub checksum: &'static str,
    pub config: ConfigRecord,
    /// The file's CRC-32, 8 hex digits.
    pub crc32: String,
    pub file: String,
    pub file_bytes: usize,
    pub format_version: u16,
    /// Label names in id order (empty for a model without a classifier).
    pub labels: Vec<String>,
    pub memory_plan: PlanRecord,
    pub tensor_bytes: u64,
    pub tensors: Vec<TensorRecord>,
    pub vocab_size: u32,
}

/// The file's config; the decoder fields only for decoders.
#[derive(Debug, Serialize)]
pub struct ConfigRecord {
    pub activation: &'static str,
    pub arch: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bos_id: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eos_id: Option<u32>,
    pub ffn: u32,
    pub heads: u32,
    pub hidden: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kv_heads: Option<u32>,
    /// The stored f32, widened.
    pub layer_norm_eps: f64,
    pub layers: u32,
    pub max_positions: u32,
    pub max_seq: u32,
    pub num_labels: u32,
    pub pooling: &'static str,
    /// The stored f32, widened.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rope_theta: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub separate_output: Option<bool>,
    pub type_vocab: u32,
    pub vocab_size: u32,
    pub weight_dtype: &'static str,
}

impl ConfigRecord {
    fn new(c: &Config) -> Self {
        let d = c.decoder;
        Self {
            activation: c.activation.name(),
            arch: c.arch.name(),
            bos_id: d.map(|d| d.bos_id),
            eos_id: d.map(|d| d.eos_id),
            ffn: c.ffn,
            heads: c.heads,
            hidden: c.hidden,
            kv_heads: d.map(|d| d.kv_heads),
            layer_norm_eps: f64::from(c.layer_norm_eps()),
            layers: c.layers,
            max_positions: c.max_positions,
            max_seq: c.max_seq,
            num_labels: c.num_labels,
            pooling: c.pooling.name(),
            rope_theta: d.map(|d| f64::from(d.rope_theta())),
            separate_output: d.map(|d| d.separate_output),
            type_vocab: c.type_vocab,
            vocab_size: c.vocab_size,
            weight_dtype: c.weight_dtype.name(),
        }
    }
}

/// The memory plan: the encoder's at `seq` tokens and `rows` rows per pass, or the
/// decoder's state at a context of `ctx` positions.
#[derive(Debug, Serialize)]
pub struct PlanRecord {
    pub arena_bytes: usize,
    pub buffers: Vec<BufferRecord>,
    /// Decoders: the context.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ctx: Option<usize>,
    /// Decoders: bytes of the key/value cache.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kv_cache_bytes: Option<usize>,
    /// Encoders: the arena a row-wise schedule cannot go below.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live_lower_bound_bytes: Option<usize>,
    /// Encoders: token rows per pass over the weights.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<usize>,
    /// Encoders: the sequence length.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<usize>,
}

/// One buffer of a memory plan.
#[derive(Debug, Serialize)]
pub struct BufferRecord {
    pub bytes: usize,
    pub name: &'static str,
    pub offset: usize,
    pub phase: &'static str,
}

/// One tensor of the file.
#[derive(Debug, Serialize)]
pub struct TensorRecord {
    pub bytes: u32,
    pub dtype: &'static str,
    /// `encoder.layer.N.KIND` / `model.layers.N.KIND` for per-layer tensors.
    pub name: String,
    pub offset: u32,
    pub shape: Vec<u32>,
}

/// Reads and validates the file at `path` and describes it, with the memory plan at
/// `seq` tokens (default: the model's `max_seq`) and `rows` rows per pass.
pub fn inspect(path: &Path, seq: Option<usize>, rows: usize) -> Result<Inspection> {
    let bytes = ModelBytes::open(path)?;
    let file = tinyformer::ModelFile::from_bytes(bytes.bytes())
        .map_err(|e| anyhow!("{}: {e}", path.display()))?;
    let c = *file.config();
    let seq = seq.unwrap_or(c.max_seq as usize);
    let bad_seq = |e| anyhow!("{}: --seq {seq}: {e}", path.display());
    let buffer = |name, phase, offset, bytes| BufferRecord {
        bytes,
        name,
        offset,
        phase,
    };
    let memory_plan = match c.decoder {
        None => {
            let plan = tinyformer::model::Plan::batched(&c, seq, rows).map_err(bad_seq)?;
            PlanRecord {
                arena_bytes: plan.total_bytes(),
                buffers: (plan.buffers.iter())
                    .map(|b| buffer(b.name, b.phase.name(), b.offset, b.bytes))
                    .collect(),
                ctx: None,
                kv_cache_bytes: None,
                live_lower_bound_bytes: Some(plan.live_lower_bound()),
                rows: Some(plan.rows),
                seq: Some(seq),
            }
        }
        Some(_) => {
            let plan = tinyformer::model::decoder::DecoderPlan::new(&c, seq).map_err(bad_seq)?;
            PlanRecord {
                arena_bytes: plan.total_bytes(),
                buffers: (plan.buffers.iter())
                    .map(|b| buffer(b.name, b.phase.name(), b.offset, b.bytes))
                    .collect(),
                ctx: Some(seq),
                kv_cache_bytes: Some(plan.cache_bytes()),
                live_lower_bound_bytes: None,
                rows: None,
                seq: None,
            }
        }
    };
    let mut tensors = Vec::new();
    let mut bytes_per_dtype: BTreeMap<&'static str, u64> = BTreeMap::new();
    let prefix = if c.decoder.is_some() {
        "model.layers"
    } else {
        "encoder.layer"
    };
    for i in 0..file.tensor_count() {
        let (Some(info), Some(spec)) = (file.tensor_info(i), tensor_spec(&c, i as usize)) else {
            continue;
        };
        let name = match info.layer {
            Some(l) => format!("{prefix}.{l}.{}", info.kind.name()),
            None => info.kind.name().to_string(),
        };
        let shape = if spec.rank == 1 {
            vec![info.dims[0]]
        } else {
            info.dims.to_vec()
        };
        *bytes_per_dtype.entry(info.dtype.name()).or_default() += u64::from(info.len);
        tensors.push(TensorRecord {
            bytes: info.len,
            dtype: info.dtype.name(),
            name,
            offset: info.offset,
            shape,
        });
    }
    Ok(Inspection {
        tensor_bytes: bytes_per_dtype.values().sum(),
        bytes_per_dtype,
        checksum: "ok",
        config: ConfigRecord::new(&c),
        crc32: format!("{:08x}", file.crc32()),
        file: path.display().to_string(),
        file_bytes: bytes.bytes().len(),
        format_version: tinyformer::format::VERSION,
        labels: (0..c.num_labels)
            .map(|i| file.label(i).unwrap_or("").to_string())
            .collect(),
        memory_plan,
        tensors,
        vocab_size: c.vocab_size,
    })
}

/// `inspect`: prints the [`Inspection`] as text, or as one JSON object with `json`.
pub fn cmd_inspect(path: &Path, seq: Option<usize>, rows: usize, json: bool) -> Result<()> {
    let v = inspect(path, seq, rows)?;
    if json {
        crate::out!("{}", serde_json::to_string(&v)?);
        return Ok(());
    }
    let c = &v.config;
    crate::out!(
        "{}: tinyformer format v{}, {} bytes, checksum: ok (crc32 {})",
        v.file,
        v.format_version,
        v.file_bytes,
        v.crc32
    );
    match (c.kv_heads, c.rope_theta, c.bos_id, c.eos_id, c.separate_output) {
        (Some(kv_heads), Some(rope_theta), Some(bos), Some(eos), Some(separate)) => crate::out!(
            "config: llama decoder, weights {}, {} layers, hidden {}, {} heads ({} key/value), ffn {}, vocab {}, context {} (trained {}), rope theta {}, bos {}, eos {}, output head {}",
            c.weight_dtype, c.layers, c.hidden, c.heads, kv_heads, c.ffn, c.vocab_size, c.max_seq, c.max_positions,
            // Printed as the f32 it is (`10000`, not `10000.0`).
            rope_theta as f32, bos, eos, if separate { "separate" } else { "tied to the embedding" }
        ),
        _ => crate::out!(
            "config: bert encoder, weights {}, {} layers, hidden {}, {} heads, ffn {}, vocab {}, max_seq {}, activation {}, pooling {}, labels {}",
            c.weight_dtype, c.layers, c.hidden, c.heads, c.ffn, c.vocab_size, c.max_seq, c.activation, c.pooling,
            if v.labels.is_empty() { "none (embedding model)".to_string() } else { v.labels.join(", ") }
        ),
    }
    crate::out!(
        "\n{:<52} {:>5} {:>14} {:>10}",
        "tensor",
        "dtype",
        "shape",
        "bytes"
    );
    for t in &v.tensors {
        let shape = (t.shape.iter().map(u32::to_string))
            .collect::<Vec<_>>()
            .join("x");
        crate::out!("{:<52} {:>5} {shape:>14} {:>10}", t.name, t.dtype, t.bytes);
    }
    crate::out!();
    for (dtype, n) in &v.bytes_per_dtype {
        crate::out!("{dtype:>5}: {n} bytes");
    }
    crate::out!("total: {} tensor bytes", v.tensor_bytes);
    let plan = &v.memory_plan;
    match (plan.ctx, plan.kv_cache_bytes) {
        (Some(ctx), Some(cache)) => crate::out!(
            "\nmemory plan at context {ctx}: arena {} bytes (key/value cache {cache})",
            plan.arena_bytes,
        ),
        _ => crate::out!(
            "\nmemory plan at seq {}, {} row(s) per batch: arena {} bytes (lower bound for a row-wise schedule {})",
            plan.seq.unwrap_or(0),
            plan.rows.unwrap_or(0),
            plan.arena_bytes,
            plan.live_lower_bound_bytes.unwrap_or(0),
        ),
    }
    for b in &plan.buffers {
        crate::out!(
            "  {:<10} {:<9} offset {:>8} bytes {:>8}",
            b.name,
            b.phase,
            b.offset,
            b.bytes
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_keep_sorted_keys() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        for (file, arch) in [
            ("models/default/sentiment-int8.tfm", "bert_encoder"),
            ("models/stories260K/stories260K-int8.tfm", "llama_decoder"),
        ] {
            let v = inspect(&root.join(file), Some(16), 1).unwrap();
            assert_eq!(v.config.arch, arch);
            assert_eq!(v.tensor_bytes, v.bytes_per_dtype.values().sum::<u64>());
            // The fields as declared, against `serde_json::Value`, whose maps sort
            // their keys at every level: the key order the output has always had.
            let text = serde_json::to_string(&v).unwrap();
            let value: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(value.to_string(), text, "{file}: keys not in sorted order");
        }
    }
}
