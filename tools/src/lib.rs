//! Host-side library of the tinyformer tool.
