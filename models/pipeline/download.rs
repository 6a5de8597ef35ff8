//! Downloading a hub model into the Hugging Face cache (feature `hub-download`): the `hf-hub` crate's
//! blocking client (ureq + rustls) fetches `model_index.json`, then every file of the components the
//! pipeline needs, into the same `models--owner--name/{blobs,snapshots,refs}` layout that
//! `huggingface_hub` writes, so the folder resolves like any cached one afterwards.

use std::path::Path;

use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Cache, Repo, RepoType};
use serde_json::Value;
use wanrt_runtime::{Error, Result};

use super::folder::{ModelFolder, PipelineKind};

/// [`ModelFolder::resolve`], downloading a hub id that is not in the cache yet.
pub fn resolve_or_download(model: &str, revision: Option<&str>, hub_cache: &Path) -> Result<ModelFolder> {
    match ModelFolder::resolve(model, revision, Some(hub_cache)) {
        Err(Error::File { msg, .. }) if super::folder::is_hub_id(model) && msg.contains("huggingface-cli download") => {
            download(model, revision.unwrap_or("main"), hub_cache)?;
            ModelFolder::resolve(model, revision, Some(hub_cache))
        }
        other => other,
    }
}

/// Fetches `id` at `revision` into `hub_cache` (files already there are not fetched again).
pub fn download(id: &str, revision: &str, hub_cache: &Path) -> Result<()> {
    let hub = |what: &str, e: hf_hub::api::sync::ApiError| Error::invalid(format!("downloading {id} ({what}): {e}"));
    let api = ApiBuilder::from_cache(Cache::new(hub_cache.to_path_buf())).with_progress(true).build().map_err(|e| hub("client", e))?;
    let repo = api.repo(Repo::with_revision(id.to_string(), RepoType::Model, revision.to_string()));
    let index = repo.get("model_index.json").map_err(|e| hub("model_index.json", e))?;
    let text = std::fs::read_to_string(&index).map_err(|e| Error::Io { path: index.clone(), source: e })?;
    let class = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| v.get("_class_name").and_then(Value::as_str).map(str::to_string))
        .ok_or_else(|| Error::File { path: index.clone(), msg: "no _class_name".into() })?;
    let kind = match class.as_str() {
        "WanPipeline" => PipelineKind::T2V,
        "WanImageToVideoPipeline" => PipelineKind::I2V,
        other => return Err(Error::invalid(format!("{id} is a {other}, not a Wan2.1 pipeline (WanPipeline or WanImageToVideoPipeline)"))),
    };
    let info = repo.info().map_err(|e| hub("file list", e))?;
    let wanted: Vec<String> = info
        .siblings
        .into_iter()
        .map(|s| s.rfilename)
        .filter(|f| f.split_once('/').is_some_and(|(dir, _)| kind.components().contains(&dir)))
        .collect();
    for file in &wanted {
        repo.get(file).map_err(|e| hub(file, e))?;
    }
    Ok(())
}
