//! A model's weights: one safetensors file or a sharded set behind `*.safetensors.index.json`, with
//! per-tensor lookup, shape checks and conversion to the compute dtype.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::convert::{can_convert, convert};
use super::index::{read_index, resolve, Source};
use super::{SafeTensorsFile, StorageDType, TensorInfo};
use crate::{DType, Error, Result};

/// All tensors of a checkpoint, each found in exactly one mapped file.
#[derive(Debug)]
pub struct WeightStore {
    source: PathBuf,
    files: Vec<SafeTensorsFile>,
    /// Tensor name -> index into `files`.
    map: BTreeMap<String, usize>,
}

/// One tensor of a [`WeightStore`]: where it is and what it holds.
#[derive(Clone, Copy, Debug)]
pub struct TensorRef<'a> {
    pub name: &'a str,
    pub dtype: StorageDType,
    pub shape: &'a [usize],
    /// The file holding it (a shard, for sharded checkpoints).
    pub file: &'a Path,
    /// Its stored bytes (little-endian, not necessarily aligned).
    pub data: &'a [u8],
}

impl TensorRef<'_> {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

impl WeightStore {
    /// Opens a `.safetensors` file, a `*.safetensors.index.json`, or a model folder holding either
    /// (`diffusion_pytorch_model.safetensors` / `model.safetensors` preferred, then their indexes).
    /// For an index, every listed shard must exist and hold the tensors listed for it.
    pub fn open(path: impl AsRef<Path>) -> Result<WeightStore> {
        match resolve(path.as_ref())? {
            Source::Single(file) => WeightStore::from_files(file.clone(), vec![SafeTensorsFile::open(&file)?]),
            Source::Index(index) => open_sharded(&index),
        }
    }

    /// A store over already opened files; `source` names the checkpoint in errors. A tensor present in
    /// two files is an error naming both.
    pub fn from_files(source: impl Into<PathBuf>, files: Vec<SafeTensorsFile>) -> Result<WeightStore> {
        let mut map = BTreeMap::new();
        for (i, f) in files.iter().enumerate() {
            for name in f.names() {
                if let Some(prev) = map.insert(name.to_string(), i) {
                    return Err(Error::Tensor {
                        path: f.path().to_path_buf(),
                        tensor: name.to_string(),
                        msg: format!("also present in {}", files.get(prev).map_or(Path::new("?"), |f| f.path()).display()),
                    });
                }
            }
        }
        Ok(WeightStore { source: source.into(), files, map })
    }

    /// The file, index or label the store was opened from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// The mapped files (shards in index order of first use).
    pub fn files(&self) -> &[SafeTensorsFile] {
        &self.files
    }

    /// Tensor names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> + '_ {
        self.map.keys().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }

    /// Looks `name` up; missing is an error naming the tensor and the checkpoint.
    pub fn info(&self, name: &str) -> Result<TensorRef<'_>> {
        let (key, &i) = self.map.get_key_value(name).ok_or_else(|| Error::Tensor {
            path: self.source.clone(),
            tensor: name.to_string(),
            msg: "not found in the checkpoint".into(),
        })?;
        let listed = || Error::Tensor { path: self.source.clone(), tensor: name.to_string(), msg: "listed but not in the file".into() };
        let file = self.files.get(i).ok_or_else(listed)?;
        let info: &TensorInfo = file.info(name).ok_or_else(listed)?;
        Ok(TensorRef { name: key, dtype: info.dtype, shape: &info.shape, file: file.path(), data: file.slice(info)? })
    }

    /// Looks `name` up and checks its shape; a mismatch names tensor, file, expected and found shape.
    pub fn expect(&self, name: &str, shape: &[usize]) -> Result<TensorRef<'_>> {
        let t = self.info(name)?;
        if t.shape != shape {
            return Err(tensor_error(&t, format!("has shape {:?}, expected {shape:?}", t.shape)));
        }
        Ok(t)
    }

    /// Checks `name`'s shape and writes it into `out` as `dtype` (F64/F32/BF16/F16 sources; integer
    /// sources are an error). `out` must be exactly `numel * dtype.size()` bytes.
    pub fn read_into(&self, name: &str, shape: &[usize], dtype: DType, out: &mut [u8]) -> Result<()> {
        let t = self.expect(name, shape)?;
        if !can_convert(t.dtype, dtype) {
            return Err(tensor_error(&t, format!("is stored as {}, which does not convert to {dtype}", t.dtype)));
        }
        let want = t.numel() * dtype.size();
        if out.len() != want {
            return Err(tensor_error(&t, format!("output buffer is {} bytes, {dtype} of shape {shape:?} needs {want}", out.len())));
        }
        convert(t.data, t.dtype, out, dtype).map_err(|e| tensor_error(&t, e.to_string()))
    }

    /// [`WeightStore::read_into`] a new buffer.
    pub fn load(&self, name: &str, shape: &[usize], dtype: DType) -> Result<Vec<u8>> {
        // Sized from the validated stored tensor, so a wild `shape` cannot overflow the allocation.
        let numel = self.expect(name, shape)?.numel();
        let mut out = vec![0u8; numel * dtype.size()];
        self.read_into(name, shape, dtype, &mut out)?;
        Ok(out)
    }

    /// Bytes all tensors take once loaded as `dtype`; tensors that do not convert (integers, bools)
    /// count at their stored size.
    pub fn total_bytes_as(&self, dtype: DType) -> usize {
        self.map
            .keys()
            .filter_map(|n| self.info(n).ok())
            .map(|t| if can_convert(t.dtype, dtype) { t.numel() * dtype.size() } else { t.data.len() })
            .sum()
    }
}

fn tensor_error(t: &TensorRef<'_>, msg: String) -> Error {
    Error::Tensor { path: t.file.to_path_buf(), tensor: t.name.to_string(), msg }
}

/// Opens every shard an index lists once and checks each listed tensor is really in its shard.
fn open_sharded(index: &Path) -> Result<WeightStore> {
    let weight_map = read_index(index)?;
    let mut files: Vec<SafeTensorsFile> = Vec::new();
    let mut map = BTreeMap::new();
    for (tensor, shard) in weight_map {
        let i = match files.iter().position(|f| f.path() == shard) {
            Some(i) => i,
            None => {
                if !shard.is_file() {
                    return Err(Error::Tensor {
                        path: index.to_path_buf(),
                        tensor,
                        msg: format!("weight_map points to shard {}, which does not exist", shard.display()),
                    });
                }
                files.push(SafeTensorsFile::open(&shard)?);
                files.len() - 1
            }
        };
        if files.get(i).and_then(|f| f.info(&tensor)).is_none() {
            return Err(Error::Tensor {
                path: shard,
                tensor,
                msg: format!("listed in {} but not in this shard", index.display()),
            });
        }
        map.insert(tensor, i);
    }
    Ok(WeightStore { source: index.to_path_buf(), files, map })
}
