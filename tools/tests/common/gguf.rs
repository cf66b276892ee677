//! A GGUF writer for tests: files built field by field, including wrong ones (the
//! reader's refusals) and small valid models (the converter's).

// GGUF value type ids.
pub const U8: u32 = 0;
pub const U32: u32 = 4;
pub const I32: u32 = 5;
pub const F32: u32 = 6;
pub const BOOL: u32 = 7;
pub const STR: u32 = 8;
pub const ARRAY: u32 = 9;
pub const U64: u32 = 10;
// ggml type ids.
pub const T_F32: u32 = 0;
pub const T_Q8_0: u32 = 8;
pub const T_Q4_K: u32 = 12;

pub fn string(s: &str) -> Vec<u8> {
    let mut out = (s.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(s.as_bytes());
    out
}

/// Writes GGUF files field by field, including wrong ones.
#[derive(Clone)]
pub struct Builder {
    pub magic: [u8; 4],
    pub version: u32,
    /// Overrides the real counts in the header.
    pub tensor_count: Option<u64>,
    pub kv_count: Option<u64>,
    pub kvs: Vec<u8>,
    pub n_kvs: u64,
    pub infos: Vec<u8>,
    pub n_tensors: u64,
    /// Padding after the infos (the reader's alignment comes from the metadata).
    pub pad_to: usize,
    pub data: Vec<u8>,
}

impl Builder {
    pub fn new() -> Self {
        Builder {
            magic: *b"GGUF",
            version: 3,
            tensor_count: None,
            kv_count: None,
            kvs: Vec::new(),
            n_kvs: 0,
            infos: Vec::new(),
            n_tensors: 0,
            pad_to: 32,
            data: Vec::new(),
        }
    }

    /// A key-value whose value bytes are given raw.
    pub fn kv(mut self, key: &str, ty: u32, value: &[u8]) -> Self {
        self.kvs.extend(string(key));
        self.kvs.extend(ty.to_le_bytes());
        self.kvs.extend_from_slice(value);
        self.n_kvs += 1;
        self
    }

    pub fn kv_u32(self, key: &str, v: u32) -> Self {
        self.kv(key, U32, &v.to_le_bytes())
    }

    /// An array value: element type, count, elements.
    pub fn kv_array(self, key: &str, element: u32, count: u64, elements: &[u8]) -> Self {
        let mut v = element.to_le_bytes().to_vec();
        v.extend(count.to_le_bytes());
        v.extend_from_slice(elements);
        self.kv(key, ARRAY, &v)
    }

    pub fn kv_strs(self, key: &str, strs: &[&str]) -> Self {
        let elements: Vec<u8> = strs.iter().flat_map(|s| string(s)).collect();
        self.kv_array(key, STR, strs.len() as u64, &elements)
    }

    pub fn tensor(mut self, name: &str, dims: &[u64], ty: u32, offset: u64) -> Self {
        self.infos.extend(string(name));
        self.infos.extend((dims.len() as u32).to_le_bytes());
        for d in dims {
            self.infos.extend(d.to_le_bytes());
        }
        self.infos.extend(ty.to_le_bytes());
        self.infos.extend(offset.to_le_bytes());
        self.n_tensors += 1;
        self
    }

    pub fn data(mut self, bytes: &[u8]) -> Self {
        self.data.extend_from_slice(bytes);
        self
    }

    pub fn bytes(&self) -> Vec<u8> {
        let mut out = self.magic.to_vec();
        out.extend(self.version.to_le_bytes());
        out.extend(self.tensor_count.unwrap_or(self.n_tensors).to_le_bytes());
        out.extend(self.kv_count.unwrap_or(self.n_kvs).to_le_bytes());
        out.extend_from_slice(&self.kvs);
        out.extend_from_slice(&self.infos);
        if self.n_tensors > 0 {
            out.resize(out.len().next_multiple_of(self.pad_to), 0);
        }
        out.extend_from_slice(&self.data);
        out
    }
}
