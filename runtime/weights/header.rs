//! The safetensors header parser: a pure function over the file's bytes, so the fuzz target and the
//! mutation test drive exactly what `SafeTensorsFile` runs.
//!
//! Layout: an 8-byte little-endian header length N, N bytes of JSON (an object mapping tensor names to
//! `{dtype, shape, data_offsets}` plus an optional `__metadata__` string map), then the data; offsets
//! are relative to the data start.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::Path;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use super::StorageDType;
use crate::{Error, Result};

/// Headers above this are refused before parsing (the `safetensors` crate uses the same bound).
pub const MAX_HEADER_LEN: u64 = 100_000_000;

/// Where one tensor lives in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    pub dtype: StorageDType,
    pub shape: Vec<usize>,
    /// Absolute byte range in the file (data start already added).
    pub byte_range: Range<usize>,
}

impl TensorInfo {
    /// Number of elements (1 for a scalar of shape `[]`).
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// A validated header: every range lies inside the file, has the size its dtype and shape imply and
/// overlaps no other.
#[derive(Clone, Debug, Default)]
pub struct Header {
    /// Sorted by name (lookups binary-search it).
    pub tensors: Vec<TensorInfo>,
    pub metadata: BTreeMap<String, String>,
    /// Offset of the data section (8 + header length).
    pub data_start: usize,
}

impl Header {
    /// Finds a tensor by name.
    pub fn get(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.binary_search_by(|t| t.name.as_str().cmp(name)).ok().and_then(|i| self.tensors.get(i))
    }

    /// Parses and validates the header of a whole file's `bytes`; errors name `path` and, where one is
    /// at fault, the tensor.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Header> {
        parse(bytes).map_err(|e| match e.tensor {
            Some(tensor) => Error::Tensor { path: path.to_path_buf(), tensor, msg: e.msg },
            None => Error::File { path: path.to_path_buf(), msg: e.msg },
        })
    }
}

/// Parses and validates the header of a whole safetensors file held in `bytes` (errors name the file
/// as `<bytes>`; [`Header::parse`] names a real path).
pub fn parse_header(bytes: &[u8]) -> Result<Header> {
    Header::parse(bytes, Path::new("<bytes>"))
}

struct Fault {
    tensor: Option<String>,
    msg: String,
}

fn fault(msg: impl Into<String>) -> Fault {
    Fault { tensor: None, msg: msg.into() }
}

fn tensor_fault(tensor: &str, msg: impl Into<String>) -> Fault {
    Fault { tensor: Some(tensor.to_string()), msg: msg.into() }
}

/// One header entry before validation. Unknown fields are ignored, as other readers do.
#[derive(Deserialize)]
struct RawEntry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: [usize; 2],
}

fn parse(bytes: &[u8]) -> std::result::Result<Header, Fault> {
    let file_len = bytes.len();
    let Some(prefix) = bytes.first_chunk::<8>() else {
        return Err(fault(format!("{file_len} bytes is too short for a safetensors file (8-byte header length missing)")));
    };
    let n = u64::from_le_bytes(*prefix);
    if n > MAX_HEADER_LEN {
        return Err(fault(format!("header length {n} exceeds the {MAX_HEADER_LEN}-byte limit (corrupt file?)")));
    }
    let n = n as usize; // bounded above, fits
    let data_start = 8 + n;
    let Some(json) = bytes.get(8..data_start) else {
        return Err(fault(format!("header length {n} runs past the end of the file ({file_len} bytes; truncated?)")));
    };
    if json.first() != Some(&b'{') {
        return Err(fault("header is not a JSON object (does not start with '{')"));
    }
    let entries: Entries =
        serde_json::from_slice(json).map_err(|e| fault(format!("header JSON is invalid: {e}")))?;
    let data_len = file_len - data_start;

    let mut header = Header { data_start, ..Header::default() };
    let mut seen_metadata = false;
    for (name, value) in entries.0 {
        if name == "__metadata__" {
            if std::mem::replace(&mut seen_metadata, true) {
                return Err(fault("header has two __metadata__ entries"));
            }
            // `null` is what some writers put for "no metadata".
            let map: Option<BTreeMap<String, String>> = serde_json::from_value(value)
                .map_err(|e| fault(format!("__metadata__ must map strings to strings: {e}")))?;
            header.metadata = map.unwrap_or_default();
            continue;
        }
        let raw: RawEntry = serde_json::from_value(value)
            .map_err(|e| tensor_fault(&name, format!("bad header entry: {e}")))?;
        header.tensors.push(validate(name, raw, data_start, data_len)?);
    }
    header.tensors.sort_by(|a, b| a.name.cmp(&b.name));
    if let Some((a, _)) = header.tensors.iter().zip(header.tensors.iter().skip(1)).find(|(a, b)| a.name == b.name) {
        return Err(tensor_fault(&a.name, "appears twice in the header"));
    }
    check_overlaps(&header.tensors)?;
    Ok(header)
}

fn validate(name: String, raw: RawEntry, data_start: usize, data_len: usize) -> std::result::Result<TensorInfo, Fault> {
    let dtype = StorageDType::parse(&raw.dtype)
        .ok_or_else(|| tensor_fault(&name, format!("unsupported dtype {:?}", raw.dtype)))?;
    let expected = raw
        .shape
        .iter()
        .try_fold(dtype.size(), |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| tensor_fault(&name, format!("shape {:?} overflows the address space", raw.shape)))?;
    let [begin, end] = raw.data_offsets;
    if begin > end {
        return Err(tensor_fault(&name, format!("data_offsets [{begin}, {end}] are reversed")));
    }
    if end > data_len {
        return Err(tensor_fault(
            &name,
            format!("data_offsets [{begin}, {end}] run past the end of the data ({data_len} bytes; truncated file?)"),
        ));
    }
    if end - begin != expected {
        return Err(tensor_fault(
            &name,
            format!(
                "data_offsets [{begin}, {end}] span {} bytes, but {} of shape {:?} needs {expected}",
                end - begin,
                dtype,
                raw.shape
            ),
        ));
    }
    Ok(TensorInfo { name, dtype, shape: raw.shape, byte_range: data_start + begin..data_start + end })
}

/// Overlapping ranges would alias two tensors; empty ranges overlap nothing.
fn check_overlaps(tensors: &[TensorInfo]) -> std::result::Result<(), Fault> {
    let mut by_offset: Vec<&TensorInfo> = tensors.iter().filter(|t| !t.byte_range.is_empty()).collect();
    by_offset.sort_by_key(|t| (t.byte_range.start, t.byte_range.end));
    for (a, b) in by_offset.iter().zip(by_offset.iter().skip(1)) {
        if b.byte_range.start < a.byte_range.end {
            return Err(tensor_fault(&b.name, format!("data overlaps tensor {} (bytes {:?} and {:?})", a.name, b.byte_range, a.byte_range)));
        }
    }
    Ok(())
}

/// The header object's entries in file order, duplicates kept (a JSON map would silently drop them).
struct Entries(Vec<(String, serde_json::Value)>);

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Entries;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Entries, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry::<String, serde_json::Value>()? {
                    entries.push(entry);
                }
                Ok(Entries(entries))
            }
        }
        d.deserialize_map(V)
    }
}
