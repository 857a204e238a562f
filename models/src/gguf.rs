//! A bounded reader of GGUF headers (metadata and tensor table) into candle's
//! [`gguf_file::Content`].
//!
//! Every count and length in the header is checked against the bytes left in the file before
//! anything is allocated, so a hostile header (2^40 tensors, a 2^60-byte string, a zero
//! alignment, dimensions whose product overflows, a tensor that runs past the end of the file)
//! fails at once with a [`GgufError`] instead of panicking or allocating without bound. The
//! tensors themselves are read later, through [`gguf_file::Content::tensor`], whose offsets this
//! reader has already checked.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};

use candle_core::quantized::GgmlDType;
use candle_core::quantized::gguf_file::{Content, TensorInfo, Value, VersionedMagic};

/// Longest string (key or value) accepted, as llama.cpp's `GGUF_MAX_STRING_LENGTH`.
pub const MAX_STRING_LEN: u64 = 1 << 30;
/// Most elements in one array, tensors or metadata entries, as llama.cpp's
/// `GGUF_MAX_ARRAY_ELEMENTS`.
pub const MAX_ELEMENTS: u64 = 1 << 30;
/// Most dimensions of a tensor (`GGML_MAX_DIMS`).
pub const MAX_DIMS: u32 = 4;
/// Deepest nesting of arrays.
pub const MAX_DEPTH: usize = 64;
/// Largest `general.alignment` accepted.
pub const MAX_ALIGNMENT: u64 = 1 << 20;

/// Why a GGUF header was refused.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// Reading failed (a truncated file is `UnexpectedEof`).
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The file does not start with `GGUF` and a known version.
    #[error("not a GGUF file (magic {magic:#010x}, version {version})")]
    BadMagic {
        /// The first four bytes, little-endian.
        magic: u32,
        /// The version field.
        version: u32,
    },
    /// A count or length is larger than the format allows or than the file can hold.
    #[error("{what} {claimed} is too large: {limit}")]
    TooLarge {
        /// What the header counts.
        what: &'static str,
        /// The value it claims.
        claimed: u64,
        /// Why it cannot be (the cap, or the bytes left in the file).
        limit: String,
    },
    /// A value type id that GGUF does not define.
    #[error("unknown metadata value type {0}")]
    UnknownValueType(u32),
    /// A tensor type id that candle does not read.
    #[error("tensor {name}: unknown GGML type {id}")]
    UnknownTensorType {
        /// The tensor.
        name: String,
        /// The type id.
        id: u32,
    },
    /// A boolean that is neither 0 nor 1.
    #[error("metadata boolean with value {0}")]
    BadBool(u8),
    /// Arrays nested deeper than [`MAX_DEPTH`].
    #[error("metadata arrays nested deeper than {MAX_DEPTH}")]
    TooDeep,
    /// `general.alignment` is zero, not a power of two or too large.
    #[error("general.alignment {0} must be a power of two up to {MAX_ALIGNMENT}")]
    BadAlignment(u64),
    /// `general.alignment` is not an integer.
    #[error("general.alignment is not an integer")]
    AlignmentType,
    /// A tensor whose shape, type or extent cannot be.
    #[error("tensor {name}: {reason}")]
    BadTensor {
        /// The tensor.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Two tensors with the same name.
    #[error("tensor {0} appears twice")]
    DuplicateTensor(String),
}

type Result<T> = std::result::Result<T, GgufError>;

/// Value type ids of the GGUF specification.
#[derive(Debug, Clone, Copy)]
enum Ty {
    U8,
    I8,
    U16,
    I16,
    U32,
    I32,
    F32,
    Bool,
    Str,
    Array,
    U64,
    I64,
    F64,
}

impl Ty {
    fn from_u32(v: u32) -> Result<Self> {
        Ok(match v {
            0 => Ty::U8,
            1 => Ty::I8,
            2 => Ty::U16,
            3 => Ty::I16,
            4 => Ty::U32,
            5 => Ty::I32,
            6 => Ty::F32,
            7 => Ty::Bool,
            8 => Ty::Str,
            9 => Ty::Array,
            10 => Ty::U64,
            11 => Ty::I64,
            12 => Ty::F64,
            v => return Err(GgufError::UnknownValueType(v)),
        })
    }

    /// Fewest bytes one value of this type takes on disk.
    fn min_size(self, len_size: u64) -> u64 {
        match self {
            Ty::U8 | Ty::I8 | Ty::Bool => 1,
            Ty::U16 | Ty::I16 => 2,
            Ty::U32 | Ty::I32 | Ty::F32 => 4,
            Ty::U64 | Ty::I64 | Ty::F64 => 8,
            Ty::Str => len_size,
            Ty::Array => 4 + len_size,
        }
    }
}

/// GGML tensor type ids that candle reads (as candle's `GgmlDType::from_u32`).
fn ggml_dtype(id: u32) -> Option<GgmlDType> {
    Some(match id {
        0 => GgmlDType::F32,
        1 => GgmlDType::F16,
        2 => GgmlDType::Q4_0,
        3 => GgmlDType::Q4_1,
        6 => GgmlDType::Q5_0,
        7 => GgmlDType::Q5_1,
        8 => GgmlDType::Q8_0,
        9 => GgmlDType::Q8_1,
        10 => GgmlDType::Q2K,
        11 => GgmlDType::Q3K,
        12 => GgmlDType::Q4K,
        13 => GgmlDType::Q5K,
        14 => GgmlDType::Q6K,
        15 => GgmlDType::Q8K,
        30 => GgmlDType::BF16,
        _ => return None,
    })
}

struct Reader<'a, R> {
    inner: &'a mut R,
    /// Bytes from the start of the header to the end of the file.
    size: u64,
    /// Bytes consumed so far.
    pos: u64,
    /// Width of length prefixes: 4 in version 1, 8 after.
    len_size: u64,
}

impl<R: Read> Reader<'_, R> {
    fn left(&self) -> u64 {
        self.size.saturating_sub(self.pos)
    }

    fn bytes<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut b = [0u8; N];
        self.inner.read_exact(&mut b)?;
        self.pos += N as u64;
        Ok(b)
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.bytes()?))
    }

    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.bytes()?))
    }

    fn len(&mut self) -> Result<u64> {
        if self.len_size == 4 {
            Ok(u64::from(self.u32()?))
        } else {
            self.u64()
        }
    }

    /// Fails unless `count` items of at least `each` bytes fit in what is left of the file.
    fn fits(&self, what: &'static str, count: u64, cap: u64, each: u64) -> Result<()> {
        if count > cap {
            return Err(GgufError::TooLarge {
                what,
                claimed: count,
                limit: format!("at most {cap}"),
            });
        }
        let left = self.left();
        if count.saturating_mul(each) > left {
            return Err(GgufError::TooLarge {
                what,
                claimed: count,
                limit: format!(
                    "needs at least {each} bytes each, {left} bytes are left in the file"
                ),
            });
        }
        Ok(())
    }

    fn string(&mut self) -> Result<String> {
        let len = self.len()?;
        self.fits("string length", len, MAX_STRING_LEN, 1)?;
        // Checked against the file above, so the allocation is at most the file's size.
        let mut v = vec![0u8; len as usize];
        self.inner.read_exact(&mut v)?;
        self.pos += len;
        // Strings should not be NUL-terminated, but some writers do it.
        while v.last() == Some(&0) {
            v.pop();
        }
        Ok(String::from_utf8_lossy(&v).into_owned())
    }

    fn value(&mut self, ty: Ty, depth: usize) -> Result<Value> {
        if depth > MAX_DEPTH {
            return Err(GgufError::TooDeep);
        }
        Ok(match ty {
            Ty::U8 => Value::U8(u8::from_le_bytes(self.bytes()?)),
            Ty::I8 => Value::I8(i8::from_le_bytes(self.bytes()?)),
            Ty::U16 => Value::U16(u16::from_le_bytes(self.bytes()?)),
            Ty::I16 => Value::I16(i16::from_le_bytes(self.bytes()?)),
            Ty::U32 => Value::U32(self.u32()?),
            Ty::I32 => Value::I32(i32::from_le_bytes(self.bytes()?)),
            Ty::U64 => Value::U64(self.u64()?),
            Ty::I64 => Value::I64(i64::from_le_bytes(self.bytes()?)),
            Ty::F32 => Value::F32(f32::from_le_bytes(self.bytes()?)),
            Ty::F64 => Value::F64(f64::from_le_bytes(self.bytes()?)),
            Ty::Bool => match u8::from_le_bytes(self.bytes()?) {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err(GgufError::BadBool(b)),
            },
            Ty::Str => Value::String(self.string()?),
            Ty::Array => {
                let elem = Ty::from_u32(self.u32()?)?;
                let len = self.len()?;
                self.fits(
                    "array length",
                    len,
                    MAX_ELEMENTS,
                    elem.min_size(self.len_size),
                )?;
                // Checked against the file above: at most one element per byte left.
                let mut vs = Vec::with_capacity(len as usize);
                for _ in 0..len {
                    vs.push(self.value(elem, depth + 1)?);
                }
                Value::Array(vs)
            }
        })
    }
}

/// Reads the header of a GGUF file (`reader` at its start) into candle's [`Content`],
/// checking every count, length, shape and tensor extent against the file's size first.
///
/// Byte-level entry point: `reader` may be a [`File`](std::fs::File) or a
/// [`Cursor`](std::io::Cursor) over bytes in memory.
pub fn read_content<R: Read + Seek>(reader: &mut R) -> Result<Content> {
    let start = reader.stream_position()?;
    let end = reader.seek(SeekFrom::End(0))?;
    reader.seek(SeekFrom::Start(start))?;
    let mut r = Reader {
        inner: reader,
        size: end.saturating_sub(start),
        pos: 0,
        len_size: 8,
    };
    let magic = r.u32()?;
    let version = r.u32()?;
    // "GGUF" in either byte order, as candle accepts.
    let magic = match (magic, version) {
        (0x4655_4747 | 0x4747_5546, 1) => VersionedMagic::GgufV1,
        (0x4655_4747 | 0x4747_5546, 2) => VersionedMagic::GgufV2,
        (0x4655_4747 | 0x4747_5546, 3) => VersionedMagic::GgufV3,
        _ => return Err(GgufError::BadMagic { magic, version }),
    };
    if matches!(magic, VersionedMagic::GgufV1) {
        r.len_size = 4;
    }
    let tensor_count = r.len()?;
    let kv_count = r.len()?;
    // A metadata entry is at least a key length, a type and one byte; a tensor entry a name
    // length, a dimension count, a type and an offset.
    let min_kv = r.len_size + 4 + 1;
    let min_tensor = r.len_size + 4 + 4 + 8;
    r.fits("metadata entry count", kv_count, MAX_ELEMENTS, min_kv)?;
    r.fits("tensor count", tensor_count, MAX_ELEMENTS, min_tensor)?;
    if kv_count * min_kv + tensor_count * min_tensor > r.left() {
        return Err(GgufError::TooLarge {
            what: "tensor and metadata entry count",
            claimed: kv_count + tensor_count,
            limit: format!("{} bytes are left in the file", r.left()),
        });
    }
    let mut metadata = HashMap::new();
    for _ in 0..kv_count {
        let key = r.string()?;
        let ty = Ty::from_u32(r.u32()?)?;
        let value = r.value(ty, 0)?;
        metadata.insert(key, value);
    }
    let mut tensors = Vec::new();
    for _ in 0..tensor_count {
        let name = r.string()?;
        let n_dims = r.u32()?;
        if n_dims > MAX_DIMS {
            return Err(GgufError::BadTensor {
                name,
                reason: format!("{n_dims} dimensions, at most {MAX_DIMS}"),
            });
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            dims.push(r.len()?);
        }
        let id = r.u32()?;
        let dtype = ggml_dtype(id).ok_or_else(|| GgufError::UnknownTensorType {
            name: name.clone(),
            id,
        })?;
        let offset = r.u64()?;
        tensors.push((name, dims, dtype, offset));
    }
    let alignment = match metadata.get("general.alignment") {
        Some(Value::U8(v)) => u64::from(*v),
        Some(Value::U16(v)) => u64::from(*v),
        Some(Value::U32(v)) => u64::from(*v),
        Some(Value::U64(v)) => *v,
        Some(Value::I8(v)) if *v >= 0 => *v as u64,
        Some(Value::I16(v)) if *v >= 0 => *v as u64,
        Some(Value::I32(v)) if *v >= 0 => *v as u64,
        Some(Value::I64(v)) if *v >= 0 => *v as u64,
        Some(_) => return Err(GgufError::AlignmentType),
        None => candle_core::quantized::gguf_file::DEFAULT_ALIGNMENT,
    };
    if alignment == 0 || !alignment.is_power_of_two() || alignment > MAX_ALIGNMENT {
        return Err(GgufError::BadAlignment(alignment));
    }
    // Offsets are relative to the reader's start, as candle's tensor reads seek to them.
    let header_end = start + r.pos;
    let data_offset = header_end.div_ceil(alignment) * alignment;
    let mut tensor_infos = HashMap::with_capacity(tensors.len());
    for (name, mut dims, dtype, offset) in tensors {
        let bad = |reason: String| GgufError::BadTensor {
            name: name.clone(),
            reason,
        };
        let elems = dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| bad(format!("dimensions {dims:?} overflow")))?;
        let block = dtype.block_size() as u64;
        if elems % block != 0 {
            return Err(bad(format!(
                "{elems} elements is not a multiple of {dtype:?}'s block of {block}"
            )));
        }
        let bytes = (elems / block)
            .checked_mul(dtype.type_size() as u64)
            .ok_or_else(|| bad(format!("dimensions {dims:?} overflow")))?;
        let fits = data_offset
            .checked_add(offset)
            .and_then(|s| s.checked_add(bytes))
            .is_some_and(|e| e <= end);
        if !fits {
            return Err(bad(format!(
                "{bytes} bytes at data offset {offset} run past the end of the file ({end} bytes)"
            )));
        }
        if offset % alignment != 0 {
            return Err(bad(format!(
                "offset {offset} is not a multiple of the alignment {alignment}"
            )));
        }
        // GGUF lists dimensions innermost first; candle's shapes are outermost first.
        dims.reverse();
        let shape: Vec<usize> = dims
            .into_iter()
            .map(usize::try_from)
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| bad("a dimension does not fit in memory".into()))?;
        let info = TensorInfo {
            ggml_dtype: dtype,
            shape: shape.into(),
            offset,
        };
        if tensor_infos.insert(name.clone(), info).is_some() {
            return Err(GgufError::DuplicateTensor(name));
        }
    }
    Ok(Content {
        magic,
        metadata,
        tensor_infos,
        tensor_data_offset: data_offset,
    })
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;
    use std::path::Path;

    use candle_core::quantized::gguf_file::{self, Value};
    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::{Device, Tensor};

    use super::*;
    use crate::DecoderConfig;

    /// A version-3 header with these counts, then `rest`.
    fn header(tensors: u64, kvs: u64, rest: &[u8]) -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend(3u32.to_le_bytes());
        b.extend(tensors.to_le_bytes());
        b.extend(kvs.to_le_bytes());
        b.extend(rest);
        b
    }

    fn gstr(s: &str) -> Vec<u8> {
        let mut b = (s.len() as u64).to_le_bytes().to_vec();
        b.extend(s.as_bytes());
        b
    }

    /// One u32 metadata entry.
    fn kv_u32(key: &str, v: u32) -> Vec<u8> {
        let mut b = gstr(key);
        b.extend(4u32.to_le_bytes());
        b.extend(v.to_le_bytes());
        b
    }

    /// One tensor entry (dims innermost first, as on disk).
    fn tensor(name: &str, dims: &[u64], dtype: u32, offset: u64) -> Vec<u8> {
        let mut b = gstr(name);
        b.extend((dims.len() as u32).to_le_bytes());
        for d in dims {
            b.extend(d.to_le_bytes());
        }
        b.extend(dtype.to_le_bytes());
        b.extend(offset.to_le_bytes());
        b
    }

    fn read(bytes: &[u8]) -> Result<Content> {
        read_content(&mut Cursor::new(bytes))
    }

    #[test]
    fn a_tensor_count_of_2_pow_40_fails_fast() {
        let err = read(&header(1 << 40, 0, &[])).unwrap_err();
        assert!(
            matches!(
                err,
                GgufError::TooLarge {
                    what: "tensor count",
                    ..
                }
            ),
            "{err}"
        );
        // Under the cap but more than the file can hold: refused before allocating.
        let err = read(&header(1 << 20, 0, &[0; 64])).unwrap_err();
        assert!(err.to_string().contains("bytes are left"), "{err}");
    }

    #[test]
    fn a_string_of_2_pow_60_bytes_fails_fast() {
        let mut rest = (1u64 << 60).to_le_bytes().to_vec();
        rest.extend([b'k'; 16]);
        let err = read(&header(0, 1, &rest)).unwrap_err();
        assert!(
            matches!(
                err,
                GgufError::TooLarge {
                    what: "string length",
                    ..
                }
            ),
            "{err}"
        );
        // Within the cap, beyond the file.
        let mut rest = (1u64 << 20).to_le_bytes().to_vec();
        rest.extend([0; 16]);
        let err = read(&header(0, 1, &rest)).unwrap_err();
        assert!(err.to_string().contains("bytes are left"), "{err}");
    }

    #[test]
    fn a_huge_array_fails_fast() {
        let mut rest = gstr("a");
        rest.extend(9u32.to_le_bytes()); // array
        rest.extend(4u32.to_le_bytes()); // of u32
        rest.extend((1u64 << 29).to_le_bytes());
        rest.extend([0; 64]);
        let err = read(&header(0, 1, &rest)).unwrap_err();
        assert!(
            matches!(
                err,
                GgufError::TooLarge {
                    what: "array length",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn deeply_nested_arrays_are_refused() {
        let mut rest = gstr("a");
        rest.extend(9u32.to_le_bytes());
        for _ in 0..100 {
            rest.extend(9u32.to_le_bytes());
            rest.extend(1u64.to_le_bytes());
        }
        rest.extend([0; 16]);
        let err = read(&header(0, 1, &rest)).unwrap_err();
        assert!(matches!(err, GgufError::TooDeep), "{err}");
    }

    #[test]
    fn a_zero_alignment_is_an_error_not_a_division_by_zero() {
        // candle's own reader divides by the alignment (a panic at 0).
        for a in [0, 3, 1 << 30] {
            let err = read(&header(0, 1, &kv_u32("general.alignment", a))).unwrap_err();
            assert!(
                matches!(err, GgufError::BadAlignment(v) if v == u64::from(a)),
                "{err}"
            );
        }
    }

    #[test]
    fn overflowing_dimensions_and_out_of_file_tensors_are_refused() {
        let t = tensor("w", &[1 << 32, 1 << 32, 1 << 32], 0, 0);
        let err = read(&header(1, 0, &t)).unwrap_err();
        assert!(err.to_string().contains("overflow"), "{err}");
        let t = tensor("w", &[1 << 20, 1 << 20], 0, 0);
        let err = read(&header(1, 0, &t)).unwrap_err();
        assert!(err.to_string().contains("past the end"), "{err}");
        let t = tensor("w", &[4], 0, u64::MAX - 8);
        let err = read(&header(1, 0, &t)).unwrap_err();
        assert!(err.to_string().contains("past the end"), "{err}");
        // 33 elements of Q8_0 (blocks of 32).
        let t = tensor("w", &[33], 8, 0);
        let err = read(&header(1, 0, &t)).unwrap_err();
        assert!(err.to_string().contains("block"), "{err}");
        let err = read(&header(1, 0, &tensor("w", &[1; 5], 0, 0))).unwrap_err();
        assert!(err.to_string().contains("dimensions"), "{err}");
        let err = read(&header(1, 0, &tensor("w", &[1], 99, 0))).unwrap_err();
        assert!(
            matches!(err, GgufError::UnknownTensorType { id: 99, .. }),
            "{err}"
        );
    }

    #[test]
    fn truncated_files_are_errors() {
        let mut md = Vec::new();
        let key = "general.architecture";
        let mut kv = gstr(key);
        kv.extend(8u32.to_le_bytes());
        kv.extend(gstr("llama"));
        md.extend(kv);
        let full = header(0, 1, &md);
        for cut in 0..full.len() {
            assert!(read(&full[..cut]).is_err(), "cut at {cut}");
        }
        assert!(read(&full).is_ok());
    }

    #[test]
    fn reads_what_candle_writes_as_candle_does() {
        let dev = Device::Cpu;
        let a = QTensor::quantize(
            &Tensor::arange(0f32, 64., &dev)
                .unwrap()
                .reshape((2, 32))
                .unwrap(),
            GgmlDType::Q8_0,
        )
        .unwrap();
        let b = QTensor::quantize(
            &Tensor::ones((3,), candle_core::DType::F32, &dev).unwrap(),
            GgmlDType::F32,
        )
        .unwrap();
        let name = Value::String("tiny".into());
        let list = Value::Array(vec![Value::U32(1), Value::U32(2)]);
        let mut buf = Cursor::new(Vec::new());
        gguf_file::write(
            &mut buf,
            &[("general.name", &name), ("x.list", &list)],
            &[("a", &a), ("b", &b)],
        )
        .unwrap();
        let bytes = buf.into_inner();
        let ours = read(&bytes).unwrap();
        let theirs = gguf_file::Content::read(&mut Cursor::new(&bytes)).unwrap();
        assert_eq!(ours.tensor_data_offset, theirs.tensor_data_offset);
        assert_eq!(ours.metadata.len(), 2);
        for (n, t) in &theirs.tensor_infos {
            let o = &ours.tensor_infos[n];
            assert_eq!(
                (o.shape.dims(), o.offset, o.ggml_dtype),
                (t.shape.dims(), t.offset, t.ggml_dtype)
            );
            let q = ours.tensor(&mut Cursor::new(&bytes), n, &dev).unwrap();
            assert_eq!(q.shape().dims(), t.shape.dims());
        }
    }

    #[test]
    fn a_scalar_token_embedding_without_vocab_size_is_an_error() {
        // `token_embd.weight` with no dimensions, and no `llama.vocab_size`: the vocabulary
        // size was read as `dims()[0]` (an index panic).
        let mut rest = Vec::new();
        let mut arch = gstr("general.architecture");
        arch.extend(8u32.to_le_bytes());
        arch.extend(gstr("llama"));
        rest.extend(arch);
        for (k, v) in [
            ("llama.embedding_length", 16),
            ("llama.attention.head_count", 2),
            ("llama.feed_forward_length", 24),
            ("llama.block_count", 1),
        ] {
            rest.extend(kv_u32(k, v));
        }
        rest.extend(tensor("token_embd.weight", &[], 0, 0));
        rest.extend([0; 64]);
        let content = read(&header(1, 5, &rest)).unwrap();
        let err = DecoderConfig::from_gguf(&content, Path::new("x.gguf")).unwrap_err();
        assert!(err.to_string().contains("vocab_size"), "{err}");
    }

    #[test]
    fn absurd_sizes_in_metadata_are_refused_before_loading() {
        let mut rest = Vec::new();
        let mut arch = gstr("general.architecture");
        arch.extend(8u32.to_le_bytes());
        arch.extend(gstr("llama"));
        rest.extend(arch);
        for (k, v) in [
            ("llama.embedding_length", 16),
            ("llama.attention.head_count", 2),
            ("llama.feed_forward_length", 24),
            ("llama.vocab_size", 32),
            ("llama.block_count", u32::MAX),
        ] {
            rest.extend(kv_u32(k, v));
        }
        let content = read(&header(0, 6, &rest)).unwrap();
        let err = DecoderConfig::from_gguf(&content, Path::new("x.gguf")).unwrap_err();
        assert!(err.to_string().contains("num_hidden_layers"), "{err}");
    }
}
