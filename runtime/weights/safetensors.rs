//! One safetensors file, memory-mapped (or held in memory) with its header validated at open.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::header::{Header, TensorInfo};
use crate::{Error, Result};

enum Storage {
    Mapped(Mmap),
    Owned(Vec<u8>),
}

/// A safetensors file whose header has been checked: every tensor's bytes lie inside the file, have
/// the size its dtype and shape imply, and overlap no other tensor's.
pub struct SafeTensorsFile {
    path: PathBuf,
    storage: Storage,
    header: Header,
}

impl SafeTensorsFile {
    /// Maps `path` read-only and validates its header; every error names the file.
    pub fn open(path: impl AsRef<Path>) -> Result<SafeTensorsFile> {
        let path = path.as_ref();
        let io = |source| Error::Io { path: path.to_path_buf(), source };
        let file = File::open(path).map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        if !meta.is_file() {
            return Err(Error::File { path: path.to_path_buf(), msg: "not a regular file".into() });
        }
        let map = map_read_only(&file).map_err(io)?;
        let header = Header::parse(&map, path)?;
        Ok(SafeTensorsFile { path: path.to_path_buf(), storage: Storage::Mapped(map), header })
    }

    /// Validates a whole file held in memory; `label` stands for its path in error messages.
    pub fn from_bytes(bytes: Vec<u8>, label: impl Into<PathBuf>) -> Result<SafeTensorsFile> {
        let path = label.into();
        let header = Header::parse(&bytes, &path)?;
        Ok(SafeTensorsFile { path, storage: Storage::Owned(bytes), header })
    }

    /// The file's path (or the label given to [`SafeTensorsFile::from_bytes`]).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Tensor names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> + '_ {
        self.header.tensors.iter().map(|t| t.name.as_str())
    }

    /// All tensors, sorted by name.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.header.tensors
    }

    /// The header's `__metadata__` (empty when absent).
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.header.metadata
    }

    /// Dtype, shape and byte range of `name`, if present.
    pub fn info(&self, name: &str) -> Option<&TensorInfo> {
        self.header.get(name)
    }

    /// The stored bytes of `name` (little-endian, not necessarily aligned).
    pub fn bytes(&self, name: &str) -> Result<&[u8]> {
        let info = self.info(name).ok_or_else(|| Error::Tensor {
            path: self.path.clone(),
            tensor: name.to_string(),
            msg: "not in this file".into(),
        })?;
        self.slice(info)
    }

    /// The stored bytes of a tensor of this file. Ranges were validated at open, so the error is
    /// only for an `info` that came from another file.
    pub(crate) fn slice(&self, info: &TensorInfo) -> Result<&[u8]> {
        let all: &[u8] = match &self.storage {
            Storage::Mapped(m) => m,
            Storage::Owned(v) => v,
        };
        all.get(info.byte_range.clone()).ok_or_else(|| Error::Tensor {
            path: self.path.clone(),
            tensor: info.name.clone(),
            msg: format!("bytes {:?} lie outside the file ({} bytes)", info.byte_range, all.len()),
        })
    }
}

/// The crate's only `unsafe` outside the GPU layer: memmap2 cannot prove the file stays unchanged.
fn map_read_only(file: &File) -> std::io::Result<Mmap> {
    // SAFETY: read-only map; like every mmap-based checkpoint loader we rely on nobody truncating or
    // rewriting the file while it is open. Every access is bounds-checked against the mapped length.
    unsafe { Mmap::map(file) }
}

impl std::fmt::Debug for SafeTensorsFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SafeTensorsFile")
            .field("path", &self.path)
            .field("tensors", &self.header.tensors.len())
            .finish()
    }
}
