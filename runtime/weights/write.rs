//! Writing safetensors files: names sorted, data packed in name order, header padded with spaces to a
//! multiple of 8 bytes (so data starts aligned), written to a temp file and renamed into place.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde_json::{json, Map, Value};

use super::StorageDType;
use crate::{Error, Result};

/// One tensor to write: name, dtype, shape, little-endian bytes (`numel * dtype.size()` of them).
pub type TensorEntry<'a> = (&'a str, StorageDType, &'a [usize], &'a [u8]);

/// The bytes of a safetensors file holding `tensors` and the `__metadata__` pairs `metadata`
/// (omitted when empty). Duplicate names and data of the wrong size are errors naming the tensor.
pub fn serialize_safetensors(tensors: &[TensorEntry<'_>], metadata: &[(&str, &str)]) -> Result<Vec<u8>> {
    let label = Path::new("<serialized safetensors>");
    let mut sorted: BTreeMap<&str, &TensorEntry<'_>> = BTreeMap::new();
    for t in tensors {
        let bad = |msg: &str| Error::Tensor { path: label.to_path_buf(), tensor: t.0.to_string(), msg: msg.into() };
        if t.0 == "__metadata__" {
            return Err(bad("is a reserved name"));
        }
        let need = t.2.iter().try_fold(t.1.size(), |a, &d| a.checked_mul(d));
        if need != Some(t.3.len()) {
            let need = need.map_or("more than usize::MAX".to_string(), |n| n.to_string());
            return Err(bad(&format!("has {} data bytes, but {} of shape {:?} needs {need}", t.3.len(), t.1, t.2)));
        }
        if sorted.insert(t.0, t).is_some() {
            return Err(bad("is given twice"));
        }
    }
    let mut header = Map::new();
    if !metadata.is_empty() {
        let meta: Map<String, Value> = metadata.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
        header.insert("__metadata__".into(), Value::Object(meta));
    }
    let mut offset = 0usize;
    for (name, (_, dtype, shape, data)) in &sorted {
        let entry = json!({ "dtype": dtype.name(), "shape": shape, "data_offsets": [offset, offset + data.len()] });
        header.insert(name.to_string(), entry);
        offset += data.len();
    }
    let mut json = serde_json::to_vec(&Value::Object(header))
        .map_err(|e| Error::File { path: label.to_path_buf(), msg: format!("cannot encode header: {e}") })?;
    json.resize(json.len().next_multiple_of(8), b' ');
    let mut out = Vec::with_capacity(8 + json.len() + offset);
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(&json);
    for (_, _, _, data) in sorted.values() {
        out.extend_from_slice(data);
    }
    Ok(out)
}

/// Writes `tensors` to `path` atomically: readers see the old file or the whole new one, never a part.
pub fn write_safetensors(path: impl AsRef<Path>, tensors: &[TensorEntry<'_>], metadata: &[(&str, &str)]) -> Result<()> {
    let path = path.as_ref();
    let bytes = serialize_safetensors(tensors, metadata).map_err(|e| match e {
        Error::Tensor { tensor, msg, .. } => Error::Tensor { path: path.to_path_buf(), tensor, msg },
        other => other,
    })?;
    let name = path.file_name().ok_or_else(|| Error::File { path: path.to_path_buf(), msg: "not a file path".into() })?;
    let tmp = path.with_file_name(format!(".{}.tmp{}", name.to_string_lossy(), std::process::id()));
    let io = |source| Error::Io { path: tmp.clone(), source };
    let written = (|| {
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(&bytes).map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, path).map_err(|source| Error::Io { path: path.to_path_buf(), source })
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}
