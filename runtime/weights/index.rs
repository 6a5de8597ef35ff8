//! Finding the checkpoint in a model folder and reading a sharded checkpoint's index.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

use crate::{Error, Result};

/// What a path given to `WeightStore::open` resolves to.
pub(crate) enum Source {
    Single(PathBuf),
    Index(PathBuf),
}

/// Single-file names first, as Diffusers and Transformers prefer them to an index next to them.
const SINGLE_NAMES: [&str; 2] = ["diffusion_pytorch_model.safetensors", "model.safetensors"];
const INDEX_NAMES: [&str; 2] = ["diffusion_pytorch_model.safetensors.index.json", "model.safetensors.index.json"];
const INDEX_SUFFIX: &str = ".safetensors.index.json";

/// Resolves a `.safetensors` file, an index, or a folder holding one of them.
pub(crate) fn resolve(path: &Path) -> Result<Source> {
    if !path.is_dir() {
        if !path.exists() {
            return Err(Error::File { path: path.to_path_buf(), msg: "does not exist".into() });
        }
        return Ok(if file_name(path).ends_with(INDEX_SUFFIX) {
            Source::Index(path.to_path_buf())
        } else {
            Source::Single(path.to_path_buf())
        });
    }
    if let Some(p) = SINGLE_NAMES.iter().map(|n| path.join(n)).find(|p| p.is_file()) {
        return Ok(Source::Single(p));
    }
    if let Some(p) = INDEX_NAMES.iter().map(|n| path.join(n)).find(|p| p.is_file()) {
        return Ok(Source::Index(p));
    }
    let entries = std::fs::read_dir(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
    let mut names: Vec<String> = entries.filter_map(|e| e.ok()).map(|e| file_name(&e.path())).collect();
    names.sort();
    let indexes: Vec<&String> = names.iter().filter(|n| n.ends_with(INDEX_SUFFIX)).collect();
    let singles: Vec<&String> = names.iter().filter(|n| n.ends_with(".safetensors")).collect();
    match (indexes.as_slice(), singles.as_slice()) {
        ([one], _) => Ok(Source::Index(path.join(one))),
        ([], [one]) => Ok(Source::Single(path.join(one))),
        ([], []) => Err(Error::File {
            path: path.to_path_buf(),
            msg: "folder holds no .safetensors file and no *.safetensors.index.json".into(),
        }),
        ([], many) => Err(Error::File {
            path: path.to_path_buf(),
            msg: format!("several .safetensors files and no index, which one to load is ambiguous: {many:?}"),
        }),
        (many, _) => Err(Error::File {
            path: path.to_path_buf(),
            msg: format!("several *.safetensors.index.json files, which one to load is ambiguous: {many:?}"),
        }),
    }
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

#[derive(Deserialize)]
struct RawIndex {
    weight_map: BTreeMap<String, String>,
}

/// Reads an index's `weight_map` as tensor name -> shard path (next to the index).
pub(crate) fn read_index(index: &Path) -> Result<BTreeMap<String, PathBuf>> {
    let len = std::fs::metadata(index).map_err(|source| Error::Io { path: index.to_path_buf(), source })?.len();
    if len > MAX_INDEX_BYTES {
        return Err(Error::File { path: index.to_path_buf(), msg: format!("{len} bytes is too large for a safetensors index (at most {MAX_INDEX_BYTES})") });
    }
    let text = std::fs::read(index).map_err(|source| Error::Io { path: index.to_path_buf(), source })?;
    parse_index(&text, index)
}

/// Indexes above this are refused unread: a 14B checkpoint's is ~100 KB (one line per tensor).
pub const MAX_INDEX_BYTES: u64 = 64 << 20;

/// Parses an index's bytes (`{"metadata": ..., "weight_map": {tensor: shard file}}`, as transformers
/// and diffusers write it) into tensor name -> shard path beside `index`. Shard names must be plain
/// file names inside the folder; errors name `index` and the tensor.
pub fn parse_index(bytes: &[u8], index: &Path) -> Result<BTreeMap<String, PathBuf>> {
    let raw: RawIndex = serde_json::from_slice(bytes)
        .map_err(|e| Error::File { path: index.to_path_buf(), msg: format!("not a valid safetensors index: {e}") })?;
    let dir = index.parent().unwrap_or(Path::new(""));
    let mut map = BTreeMap::new();
    for (tensor, shard) in raw.weight_map {
        // Shards live beside the index; a path leaving the folder is refused rather than followed.
        let inside = Path::new(&shard).components().all(|c| matches!(c, Component::Normal(_)));
        if shard.is_empty() || !inside {
            return Err(Error::Tensor {
                path: index.to_path_buf(),
                tensor,
                msg: format!("weight_map points to {shard:?}, which is not a file name inside the folder"),
            });
        }
        map.insert(tensor, dir.join(shard));
    }
    Ok(map)
}
