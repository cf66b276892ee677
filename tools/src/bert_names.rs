//! Hugging Face BERT tensor names: the one table of where each tensor of a tinyformer
//! encoder file comes from in a checkpoint, read by the checkpoint's shape check and by
//! the converter. Names are as [`crate::checkpoint`] keys them: without the `bert.`
//! prefix, and with old `gamma`/`beta` LayerNorm names mapped to `weight`/`bias`.

use tinyformer::format::TensorKind as K;

/// The embedding block's tensors, in the order the shape check goes through them.
pub const EMBEDDINGS: [(K, &str); 4] = [
    (K::WordEmb, "embeddings.word_embeddings.weight"),
    (K::PosEmb, "embeddings.position_embeddings.weight"),
    (K::TypeEmb, "embeddings.token_type_embeddings.weight"),
    (K::EmbNorm, "embeddings.LayerNorm"),
];

/// One encoder layer's tensors, under [`layer_prefix`].
pub const LAYER: [(K, &str); 14] = [
    (K::QueryW, "attention.self.query.weight"),
    (K::QueryB, "attention.self.query.bias"),
    (K::KeyW, "attention.self.key.weight"),
    (K::KeyB, "attention.self.key.bias"),
    (K::ValueW, "attention.self.value.weight"),
    (K::ValueB, "attention.self.value.bias"),
    (K::AttnOutW, "attention.output.dense.weight"),
    (K::AttnOutB, "attention.output.dense.bias"),
    (K::AttnNorm, "attention.output.LayerNorm"),
    (K::Ffn1W, "intermediate.dense.weight"),
    (K::Ffn1B, "intermediate.dense.bias"),
    (K::Ffn2W, "output.dense.weight"),
    (K::Ffn2B, "output.dense.bias"),
    (K::FfnNorm, "output.LayerNorm"),
];

/// The pooler (`tanh(W · h_cls + b)`), present for CLS + pooler pooling.
pub const POOLER: [(K, &str); 2] = [
    (K::PoolerW, "pooler.dense.weight"),
    (K::PoolerB, "pooler.dense.bias"),
];

/// The classifier head of a `BertForSequenceClassification`.
pub const CLASSIFIER: [(K, &str); 2] = [
    (K::ClassW, "classifier.weight"),
    (K::ClassB, "classifier.bias"),
];

/// The prefix of layer `layer`'s tensor names.
pub fn layer_prefix(layer: impl std::fmt::Display) -> String {
    format!("encoder.layer.{layer}.")
}

/// Whether `kind` is a LayerNorm, whose table entry is a stem: the checkpoint holds
/// `{stem}.weight` (gamma) and `{stem}.bias` (beta), the format one `[2, hidden]`
/// tensor.
pub fn is_norm(kind: K) -> bool {
    matches!(kind, K::EmbNorm | K::AttnNorm | K::FfnNorm)
}

/// The checkpoint names of a table entry: the name itself, or for a LayerNorm its
/// `.weight` and `.bias`.
pub fn tensor_names(kind: K, name: &str) -> Vec<String> {
    if is_norm(kind) {
        vec![format!("{name}.weight"), format!("{name}.bias")]
    } else {
        vec![name.to_string()]
    }
}

/// The checkpoint name of `kind` (in layer `layer` for the per-layer kinds; the stem
/// for a LayerNorm), or `None` for a tensor the converter computes (requantization
/// tables, scalars, lookup tables).
pub fn name(kind: K, layer: Option<u16>) -> Option<String> {
    let (table, prefix): (&[(K, &str)], String) = match layer {
        Some(l) => (&LAYER, layer_prefix(l)),
        None if EMBEDDINGS.iter().any(|&(k, _)| k == kind) => (&EMBEDDINGS, String::new()),
        None if POOLER.iter().any(|&(k, _)| k == kind) => (&POOLER, String::new()),
        None => (&CLASSIFIER, String::new()),
    };
    let &(_, name) = table.iter().find(|&&(k, _)| k == kind)?;
    Some(format!("{prefix}{name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            name(K::Ffn1W, Some(3)).as_deref(),
            Some("encoder.layer.3.intermediate.dense.weight")
        );
        assert_eq!(
            name(K::EmbNorm, None).as_deref(),
            Some("embeddings.LayerNorm")
        );
        assert_eq!(name(K::ClassB, None).as_deref(), Some("classifier.bias"));
        assert_eq!(name(K::QueryRq, Some(0)), None);
        assert_eq!(name(K::WordRq, None), None);
        assert_eq!(
            tensor_names(K::FfnNorm, "output.LayerNorm"),
            ["output.LayerNorm.weight", "output.LayerNorm.bias"]
        );
    }
}
