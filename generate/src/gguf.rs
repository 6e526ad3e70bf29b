//! Reads a GGUF file's metadata (header and key/value section only), for
//! model provenance: architecture, name, quantization, context length and
//! license, without loading any tensor.

use std::collections::BTreeMap;
use std::io::{BufReader, Read};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("not a GGUF file")]
    BadMagic,
    #[error("unsupported GGUF version {0}")]
    Version(u32),
    #[error("malformed GGUF metadata: {0}")]
    Malformed(&'static str),
}

/// A metadata value; arrays are summarized by their length.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
    Array(u64),
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Int(v) => write!(f, "{v}"),
            Value::Float(v) => write!(f, "{v}"),
            Value::Bool(v) => write!(f, "{v}"),
            Value::Str(v) => f.write_str(v),
            Value::Array(n) => write!(f, "[{n} items]"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct GgufInfo {
    pub version: u32,
    pub tensors: u64,
    pub metadata: BTreeMap<String, Value>,
}

impl GgufInfo {
    pub fn get_str(&self, key: &str) -> Option<String> {
        self.metadata.get(key).map(ToString::to_string)
    }

    pub fn architecture(&self) -> Option<String> {
        self.get_str("general.architecture")
    }

    pub fn context_length(&self) -> Option<i64> {
        let arch = self.architecture()?;
        match self.metadata.get(&format!("{arch}.context_length"))? {
            Value::Int(n) => Some(*n),
            _ => None,
        }
    }

    /// llama.cpp's `general.file_type` as a quantization name.
    pub fn quantization(&self) -> Option<&'static str> {
        let Value::Int(t) = self.metadata.get("general.file_type")? else {
            return None;
        };
        Some(match t {
            0 => "F32",
            1 => "F16",
            2 => "Q4_0",
            3 => "Q4_1",
            7 => "Q8_0",
            8 => "Q5_0",
            9 => "Q5_1",
            10 => "Q2_K",
            11 => "Q3_K_S",
            12 => "Q3_K_M",
            13 => "Q3_K_L",
            14 => "Q4_K_S",
            15 => "Q4_K_M",
            16 => "Q5_K_S",
            17 => "Q5_K_M",
            18 => "Q6_K",
            32 => "BF16",
            _ => "other",
        })
    }
}

struct R<T: Read>(T);

impl<T: Read> R<T> {
    fn bytes<const N: usize>(&mut self) -> Result<[u8; N], GgufError> {
        let mut b = [0u8; N];
        self.0.read_exact(&mut b)?;
        Ok(b)
    }
    fn u32(&mut self) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.bytes()?))
    }
    fn u64(&mut self) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.bytes()?))
    }
    fn string(&mut self) -> Result<String, GgufError> {
        let len = self.u64()?;
        if len > 1 << 24 {
            return Err(GgufError::Malformed("string too long"));
        }
        let mut buf = vec![0u8; len as usize];
        self.0.read_exact(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }
    fn skip(&mut self, n: u64) -> Result<(), GgufError> {
        let copied = std::io::copy(&mut (&mut self.0).take(n), &mut std::io::sink())?;
        if copied != n {
            return Err(GgufError::Malformed("truncated"));
        }
        Ok(())
    }
    fn value(&mut self, ty: u32) -> Result<Value, GgufError> {
        Ok(match ty {
            0 => Value::Int(i64::from(self.bytes::<1>()?[0])),
            1 => Value::Int(i64::from(self.bytes::<1>()?[0] as i8)),
            2 => Value::Int(i64::from(u16::from_le_bytes(self.bytes()?))),
            3 => Value::Int(i64::from(i16::from_le_bytes(self.bytes()?))),
            4 => Value::Int(i64::from(self.u32()?)),
            5 => Value::Int(i64::from(i32::from_le_bytes(self.bytes()?))),
            6 => Value::Float(f64::from(f32::from_le_bytes(self.bytes()?))),
            7 => Value::Bool(self.bytes::<1>()?[0] != 0),
            8 => Value::Str(self.string()?),
            9 => {
                let elem = self.u32()?;
                let n = self.u64()?;
                for _ in 0..n {
                    match elem {
                        8 => {
                            let len = self.u64()?;
                            self.skip(len)?;
                        }
                        0 | 1 | 7 => self.skip(1)?,
                        2 | 3 => self.skip(2)?,
                        4..=6 => self.skip(4)?,
                        10..=12 => self.skip(8)?,
                        _ => return Err(GgufError::Malformed("nested array")),
                    }
                }
                Value::Array(n)
            }
            10 => Value::Int(self.u64()? as i64),
            11 => Value::Int(i64::from_le_bytes(self.bytes()?)),
            12 => Value::Float(f64::from_le_bytes(self.bytes()?)),
            _ => return Err(GgufError::Malformed("unknown value type")),
        })
    }
}

/// Reads the metadata of a GGUF stream.
pub fn read_info(reader: impl Read) -> Result<GgufInfo, GgufError> {
    let mut r = R(reader);
    if &r.bytes::<4>()? != b"GGUF" {
        return Err(GgufError::BadMagic);
    }
    let version = r.u32()?;
    if !(2..=3).contains(&version) {
        return Err(GgufError::Version(version));
    }
    let tensors = r.u64()?;
    let kv = r.u64()?;
    if kv > 1 << 20 {
        return Err(GgufError::Malformed("too many keys"));
    }
    let mut metadata = BTreeMap::new();
    for _ in 0..kv {
        let key = r.string()?;
        let ty = r.u32()?;
        metadata.insert(key, r.value(ty)?);
    }
    Ok(GgufInfo {
        version,
        tensors,
        metadata,
    })
}

pub fn read_file(path: &Path) -> Result<GgufInfo, GgufError> {
    read_info(BufReader::new(std::fs::File::open(path)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv_str(out: &mut Vec<u8>, k: &str, v: &str) {
        out.extend((k.len() as u64).to_le_bytes());
        out.extend(k.as_bytes());
        out.extend(8u32.to_le_bytes());
        out.extend((v.len() as u64).to_le_bytes());
        out.extend(v.as_bytes());
    }

    #[test]
    fn reads_header_and_metadata() {
        let mut f = b"GGUF".to_vec();
        f.extend(3u32.to_le_bytes());
        f.extend(7u64.to_le_bytes());
        f.extend(4u64.to_le_bytes());
        kv_str(&mut f, "general.architecture", "llama");
        let k = "llama.context_length";
        f.extend((k.len() as u64).to_le_bytes());
        f.extend(k.as_bytes());
        f.extend(4u32.to_le_bytes());
        f.extend(8192u32.to_le_bytes());
        let k = "general.file_type";
        f.extend((k.len() as u64).to_le_bytes());
        f.extend(k.as_bytes());
        f.extend(4u32.to_le_bytes());
        f.extend(3u32.to_le_bytes());
        let k = "tokenizer.ggml.tokens";
        f.extend((k.len() as u64).to_le_bytes());
        f.extend(k.as_bytes());
        f.extend(9u32.to_le_bytes());
        f.extend(8u32.to_le_bytes());
        f.extend(2u64.to_le_bytes());
        for t in ["a", "bc"] {
            f.extend((t.len() as u64).to_le_bytes());
            f.extend(t.as_bytes());
        }
        let info = read_info(&f[..]).unwrap();
        assert_eq!(info.tensors, 7);
        assert_eq!(info.architecture().as_deref(), Some("llama"));
        assert_eq!(info.context_length(), Some(8192));
        assert_eq!(info.quantization(), Some("Q4_1"));
        assert_eq!(info.metadata["tokenizer.ggml.tokens"], Value::Array(2));
    }

    #[test]
    fn rejects_non_gguf_and_truncation() {
        assert!(matches!(read_info(&b"GGML...."[..]), Err(GgufError::BadMagic)));
        assert!(read_info(&b"GGUF\x03\x00\x00\x00"[..]).is_err());
    }
}
