//! Model folders as users have them: a Diffusers root with `model_index.json` (as `DiffusionPipeline.
//! save_pretrained` writes it, e.g. `Wan-AI/Wan2.1-T2V-1.3B-Diffusers`), or a hub id resolved in the
//! Hugging Face cache the way `huggingface_hub` lays it out (`file_download.py`:
//! `models--{owner}--{name}/refs/{revision}` holds a commit hash, `snapshots/{hash}/` the files).
//!
//! Nothing is downloaded here: a hub id missing from the cache is an error that says how to fetch it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;
use wanrt_runtime::{Error, Result};

use crate::wan::WanConfig;

/// Which Wan pipeline a folder holds (`_class_name` of its `model_index.json`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PipelineKind {
    /// `WanPipeline`: text to video.
    T2V,
    /// `WanImageToVideoPipeline`: image to video.
    I2V,
}

impl PipelineKind {
    /// The diffusers class name.
    pub fn class_name(self) -> &'static str {
        match self {
            PipelineKind::T2V => "WanPipeline",
            PipelineKind::I2V => "WanImageToVideoPipeline",
        }
    }

    /// The component folders the pipeline needs (`pipeline_wan.py` / `pipeline_wan_i2v.py` `__init__`).
    pub fn components(self) -> &'static [&'static str] {
        match self {
            PipelineKind::T2V => &["scheduler", "text_encoder", "tokenizer", "transformer", "vae"],
            PipelineKind::I2V => &["image_encoder", "image_processor", "scheduler", "text_encoder", "tokenizer", "transformer", "vae"],
        }
    }
}

/// A Diffusers model root whose `model_index.json` names a Wan pipeline and whose component folders
/// all exist.
#[derive(Clone, Debug)]
pub struct ModelFolder {
    root: PathBuf,
    kind: PipelineKind,
    /// The hub id it was resolved from, if any (e.g. `Wan-AI/Wan2.1-I2V-14B-720P-Diffusers`).
    hub_id: Option<String>,
    components: BTreeMap<String, PathBuf>,
}

impl ModelFolder {
    /// `--model`: an existing folder, else a hub id (`owner/name`) looked up in `hub_cache` at
    /// `revision` (default `main`).
    pub fn resolve(model: &str, revision: Option<&str>, hub_cache: Option<&Path>) -> Result<ModelFolder> {
        let path = Path::new(model);
        if path.exists() {
            if revision.is_some() {
                return Err(Error::invalid(format!("--revision applies to a hub id, and {model} is a local folder")));
            }
            return ModelFolder::open(path);
        }
        if !is_hub_id(model) {
            return Err(Error::File { path: path.to_path_buf(), msg: "no such folder (nor a hub id of the form owner/name)".into() });
        }
        let Some(cache) = hub_cache else {
            return Err(Error::invalid(format!(
                "{model} is not a folder, and no Hugging Face cache is known (set HF_HUB_CACHE or HF_HOME, or give a folder)"
            )));
        };
        let snapshot = snapshot_dir(cache, model, revision.unwrap_or("main"))?;
        let mut folder = ModelFolder::open(&snapshot)?;
        folder.hub_id = Some(model.to_string());
        Ok(folder)
    }

    /// A Diffusers root: reads `model_index.json` and checks every component folder the pipeline needs.
    pub fn open(root: &Path) -> Result<ModelFolder> {
        let index = root.join("model_index.json");
        if !index.is_file() {
            let hint = if root.join("config.json").is_file() {
                " (this looks like one component's folder; give the model root that holds model_index.json)"
            } else {
                ""
            };
            return Err(Error::File { path: root.to_path_buf(), msg: format!("no model_index.json: not a Diffusers model root{hint}") });
        }
        let text = std::fs::read_to_string(&index).map_err(|e| Error::Io { path: index.clone(), source: e })?;
        let json: Value = serde_json::from_str(&text).map_err(|e| Error::File { path: index.clone(), msg: format!("invalid JSON: {e}") })?;
        let bad = |msg: String| Error::File { path: index.clone(), msg };
        let obj = json.as_object().ok_or_else(|| bad("not a JSON object".into()))?;
        let class = obj.get("_class_name").and_then(Value::as_str).ok_or_else(|| bad("no _class_name".into()))?;
        let kind = match class {
            "WanPipeline" => PipelineKind::T2V,
            "WanImageToVideoPipeline" => PipelineKind::I2V,
            other => return Err(bad(format!("_class_name {other} is not a Wan2.1 pipeline (WanPipeline or WanImageToVideoPipeline)"))),
        };
        // Components are `"name": [library, class]`; `[null, null]` marks an absent optional one
        // (`transformer_2` of the Wan2.1 repos).
        let listed: Vec<&str> = obj
            .iter()
            .filter(|(k, v)| !k.starts_with('_') && v.as_array().is_some_and(|a| a.len() == 2 && a.iter().all(|x| !x.is_null())))
            .map(|(k, _)| k.as_str())
            .collect();
        let mut components = BTreeMap::new();
        for &name in kind.components() {
            if !listed.contains(&name) {
                return Err(bad(format!("{class} needs the component {name}, which model_index.json does not list")));
            }
            let dir = root.join(name);
            if !dir.is_dir() {
                return Err(Error::File { path: dir, msg: format!("the {name} component's folder is missing (model_index.json lists it)") });
            }
            components.insert(name.to_string(), dir);
        }
        Ok(ModelFolder { root: root.to_path_buf(), kind, hub_id: None, components })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn kind(&self) -> PipelineKind {
        self.kind
    }

    pub fn hub_id(&self) -> Option<&str> {
        self.hub_id.as_deref()
    }

    /// The folder of a component (`transformer`, `vae`, ...).
    pub fn component(&self, name: &str) -> Result<&Path> {
        self.components
            .get(name)
            .map(PathBuf::as_path)
            .ok_or_else(|| Error::invalid(format!("{}: a {} has no {name} component", self.root.display(), self.kind.class_name())))
    }

    /// `transformer/config.json`.
    pub fn transformer_config(&self) -> Result<WanConfig> {
        WanConfig::from_path(self.component("transformer")?)
    }

    /// The name a user knows the model by: the hub id, else the root folder's name.
    pub fn name(&self) -> String {
        match &self.hub_id {
            Some(id) => id.clone(),
            None => self.root.canonicalize().unwrap_or_else(|_| self.root.clone()).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        }
    }
}

/// `owner/name` with the characters the hub allows (letters, digits, `-`, `_`, `.`).
pub fn is_hub_id(s: &str) -> bool {
    let ok = |p: &str| !p.is_empty() && !p.starts_with('.') && p.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    matches!(s.split('/').collect::<Vec<_>>().as_slice(), [owner, name] if ok(owner) && ok(name))
}

/// The snapshot folder of `id` at `revision` (a branch or tag with a `refs/` file, or a commit hash) in a
/// hub cache laid out as `huggingface_hub` writes it.
pub fn snapshot_dir(cache: &Path, id: &str, revision: &str) -> Result<PathBuf> {
    let repo = cache.join(format!("models--{}", id.replace('/', "--")));
    let fetch = format!("download it with `huggingface-cli download {id}{}`", if revision == "main" { String::new() } else { format!(" --revision {revision}") });
    if !repo.is_dir() {
        return Err(Error::File { path: repo, msg: format!("{id} is not in the Hugging Face cache; {fetch}") });
    }
    let is_hash = revision.len() == 40 && revision.chars().all(|c| c.is_ascii_hexdigit());
    let commit = if is_hash {
        revision.to_string()
    } else {
        if revision.contains("..") || revision.starts_with('/') {
            return Err(Error::invalid(format!("revision {revision:?} is not a branch, tag or commit hash")));
        }
        let r = repo.join("refs").join(revision);
        let text = std::fs::read_to_string(&r)
            .map_err(|_| Error::File { path: r.clone(), msg: format!("{id} has no revision {revision} in the cache; {fetch}") })?;
        text.trim().to_string()
    };
    let snap = repo.join("snapshots").join(&commit);
    if !snap.is_dir() {
        return Err(Error::File { path: snap, msg: format!("{id} at {revision} (commit {commit}) is not in the cache; {fetch}") });
    }
    Ok(snap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_ids() {
        for ok in ["Wan-AI/Wan2.1-T2V-1.3B-Diffusers", "a/b", "x_y/z.1"] {
            assert!(is_hub_id(ok), "{ok}");
        }
        for bad in ["Wan2.1", "a/b/c", "/abs/path", "./x", "a/", "a b/c", "../x"] {
            assert!(!is_hub_id(bad), "{bad}");
        }
    }
}
