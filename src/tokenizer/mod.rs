//! WordPiece tokenizer (placeholder).
