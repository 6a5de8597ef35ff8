//! Precomputed embeddings (`wan generate --embeds FILE`): a safetensors file with diffusers' names, as
//! `wan encode` writes it (`prompt_embeds`, `negative_prompt_embeds` (1, 512, text_dim),
//! `image_embeds` (1, 257, image_dim)), or as diffusers' `encode_prompt` returns them trimmed to
//! each prompt's length: rows past the stored ones are zero, exactly what `_get_t5_prompt_embeds`
//! pads with. Any float dtype; converted on upload.

use std::path::{Path, PathBuf};

use wanrt_runtime::tensor::bytes_to_f32;
use wanrt_runtime::weights::WeightStore;
use wanrt_runtime::{DType, Error, Result};

use crate::wan::transformer::TEXT_TOKENS;

/// Host embeddings for one generation, f32.
#[derive(Clone, Debug)]
pub struct Embeddings {
    /// (1, 512, text_dim).
    pub prompt: Vec<f32>,
    /// (1, 512, text_dim); needed when classifier-free guidance runs.
    pub negative: Option<Vec<f32>>,
    /// (1, tokens, image_dim) and its token count (I2V; computed from the image when absent).
    pub image: Option<(usize, Vec<f32>)>,
    pub path: PathBuf,
}

fn read(store: &WeightStore, path: &Path, key: &str) -> Result<Option<(Vec<usize>, Vec<f32>)>> {
    if !store.contains(key) {
        return Ok(None);
    }
    let info = store.info(key)?;
    let shape = info.shape.to_vec();
    if !info.dtype.is_float() {
        return Err(Error::Tensor { path: path.into(), tensor: key.into(), msg: format!("stored as {}, expected a float dtype", info.dtype) });
    }
    let values = bytes_to_f32(&store.load(key, &shape, DType::F32)?, DType::F32);
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(Error::Tensor { path: path.into(), tensor: key.into(), msg: format!("element {i} is {} (not finite)", values[i]) });
    }
    Ok(Some((shape, values)))
}

/// (1, L ≤ 512, dim) text embeddings zero-padded to (1, 512, dim).
fn text(store: &WeightStore, path: &Path, key: &str, dim: usize) -> Result<Option<Vec<f32>>> {
    let Some((shape, v)) = read(store, path, key)? else { return Ok(None) };
    match shape.as_slice() {
        &[1, l, d] if (1..=TEXT_TOKENS).contains(&l) && d == dim => {
            let mut out = v;
            out.resize(TEXT_TOKENS * dim, 0.0);
            Ok(Some(out))
        }
        _ => Err(Error::Tensor { path: path.into(), tensor: key.into(), msg: format!("has shape {shape:?}, expected [1, L ≤ {TEXT_TOKENS}, {dim}] (the model's text_dim)") }),
    }
}

impl Embeddings {
    /// Reads and checks the file against the model's text and image widths.
    pub fn open(path: &Path, text_dim: usize, image_dim: Option<usize>) -> Result<Embeddings> {
        if !path.is_file() {
            return Err(Error::File { path: path.into(), msg: "the --embeds file does not exist".into() });
        }
        let store = WeightStore::open(path)?;
        let prompt = text(&store, path, "prompt_embeds", text_dim)?
            .ok_or_else(|| Error::File { path: path.into(), msg: "no prompt_embeds tensor (write one with `wan encode`)".into() })?;
        let negative = text(&store, path, "negative_prompt_embeds", text_dim)?;
        let image = match (read(&store, path, "image_embeds")?, image_dim) {
            (None, _) => None,
            (Some((shape, _)), None) => {
                return Err(Error::Tensor { path: path.into(), tensor: "image_embeds".into(), msg: format!("{shape:?} given, but this is a text-to-video model") })
            }
            (Some((shape, v)), Some(dim)) => match shape.as_slice() {
                &[1, n, d] if n >= 1 && d == dim => Some((n, v)),
                _ => return Err(Error::Tensor { path: path.into(), tensor: "image_embeds".into(), msg: format!("has shape {shape:?}, expected [1, tokens, {dim}]") }),
            },
        };
        Ok(Embeddings { prompt, negative, image, path: path.into() })
    }
}
