//! The encoding stages of a generation: the prompts through UMT5 (diffusers `encode_prompt`: prompt,
//! then the negative prompt when guidance runs, each padded to 512 tokens with zero rows past its
//! length), the I2V image through CLIP (`encode_image`: `hidden_states[-2]`, then cast to the
//! transformer dtype), and the I2V condition through the VAE encoder (`prepare_latents`).

use std::sync::Arc;

use image::DynamicImage;
use wanrt_runtime::offload::{Engine, HostWeights, WeightSource};
use wanrt_runtime::ops;
use wanrt_runtime::{DType, Device, Result, Tensor};

use super::embeds::Embeddings;
use super::i2v;
use super::load::Pipeline;
use super::request::GenerateRequest;
use crate::checkpoint::SharedStore;
use crate::umt5::tokenizer::MAX_SEQUENCE_LENGTH;
use crate::umt5::{TokenBatch, TokenEmbedding};
use crate::vae::{normalize_latents, posterior_mode, AutoencoderKLWan, TilePlan};
use crate::wan::run::PlannedRun;
use crate::wan::transformer::TEXT_TOKENS;

/// An engine for a planned run, with the weights pinned or streamed through a staging ring.
pub(crate) fn engine(dev: &Arc<Device>, run: PlannedRun, source: Arc<dyn WeightSource>, low_ram: bool) -> Result<Engine> {
    let host = if low_ram { HostWeights::staging(source, 3) } else { HostWeights::pinned(source) };
    Engine::new(dev, run.units, run.plan, host)
}

/// A copy of `t` in its own allocation (so a model's activation arena is not kept alive by it).
pub(crate) fn keep(t: &Tensor, dtype: DType, what: &str) -> Result<Tensor> {
    let out = Tensor::empty_named(t.device(), t.shape(), dtype, what)?;
    ops::cast(t, &out)?;
    Ok(out)
}

impl Pipeline {
    /// (B, 512, text_dim) in the transformer dtype: row 0 the prompt, row 1 the negative prompt when
    /// guidance runs. Returns the embeddings and the host bytes the encoder's weights took.
    pub(crate) fn encode_text(&self, dev: &Arc<Device>, run: PlannedRun, req: &GenerateRequest) -> Result<(Tensor, u64)> {
        let mut prompts = vec![req.prompt.as_str()];
        if req.cfg() {
            prompts.push(req.negative_prompt.as_str());
        }
        let enc = self.tokenizer.encode_prompts(&prompts, MAX_SEQUENCE_LENGTH)?;
        let engine = engine(dev, run, Arc::new(SharedStore(self.umt5_store.clone())), self.options.low_ram)?;
        let tokens = TokenBatch { ids: enc.ids, mask: enc.mask };
        let out = self.umt5.forward(&engine, &TokenEmbedding::Store(self.umt5_store.clone()), &tokens, None)?;
        let text = keep(&out, self.options.precision.compute(), "prompt embeddings")?;
        dev.synchronize()?;
        Ok((text, engine.host_bytes()))
    }

    /// The same from precomputed embeddings.
    pub(crate) fn upload_text(&self, dev: &Arc<Device>, e: &Embeddings, req: &GenerateRequest) -> Result<Tensor> {
        let d = self.transformer.cfg.text_dim;
        let mut v = e.prompt.clone();
        if req.cfg() {
            // Checked by the plan: guidance needs the negative embeddings.
            v.extend_from_slice(e.negative.as_deref().unwrap_or(&[]));
        }
        let b = v.len() / (TEXT_TOKENS * d);
        Tensor::from_f32(dev, &[b, TEXT_TOKENS, d], self.options.precision.compute(), &v)
    }

    /// (1, 257, image_dim) in the transformer dtype, and the host bytes the encoder took.
    pub(crate) fn encode_image(&self, dev: &Arc<Device>, run: PlannedRun, image: &DynamicImage) -> Result<(Tensor, u64)> {
        let c = self.clip.as_ref().ok_or_else(|| wanrt_runtime::Error::invalid(format!("{}: a text-to-video model has no image encoder", self.components.name)))?;
        let pixels = c.processor.preprocess(image)?;
        let engine = engine(dev, run, Arc::new(SharedStore(c.store.clone())), self.options.low_ram)?;
        let out = c.model.forward(&engine, &pixels, 1, None)?;
        let emb = keep(&out, self.options.precision.compute(), "image embeddings")?;
        dev.synchronize()?;
        Ok((emb, engine.host_bytes()))
    }

    /// The transformer's 20 condition channels (1, 20, T, h, w) f32 on the host: the frame mask and
    /// the normalized VAE latents of the first-frame video, encoded in the planned `tiles` (untiled
    /// without). Returns them and the host bytes the VAE took.
    pub(crate) fn encode_condition(&self, dev: &Arc<Device>, image: &DynamicImage, req: &GenerateRequest, tiles: Option<&TilePlan>) -> Result<(Vec<f32>, u64)> {
        let img = i2v::image_condition(&crate::clip::preprocess::to_rgb8_like_pil(image)?, req.height, req.width)?;
        let m = &self.vae.model;
        let (_, h, w) = m.latent_dims(req.frames, req.height, req.width)?;
        let tiles = tiles.cloned().unwrap_or_else(|| TilePlan::untiled(h, w));
        let engine = self.vae.engine(dev, &m.encoder.units)?;
        let c = encode_i2v_condition(dev, m, &engine, &img, (req.frames, req.height, req.width), self.options.vae_encode_dtype, &tiles)?;
        Ok((c, engine.host_bytes()))
    }
}

/// diffusers `WanImageToVideoPipeline.prepare_latents` (Wan2.1 path) from a preprocessed image
/// ((1, 3, H, W) f32 in [-1, 1], as [`i2v::image_condition`] makes it): the video of the image then
/// `frames − 1` zero frames, uploaded in `video_dtype` and encoded by `engine` (the VAE encoder's
/// units) in `tiles` (bit-identical to untiled), its posterior mode normalized by the VAE's latent statistics, after the frame mask's 4
/// channels: (1, 20, T, h, w) f32 on the host. `wan bench --pipeline` times the same function.
pub fn encode_i2v_condition(dev: &Arc<Device>, vae: &AutoencoderKLWan, engine: &Engine, image: &[f32], (frames, height, width): (usize, usize, usize), video_dtype: DType, tiles: &TilePlan) -> Result<Vec<f32>> {
    let (t, lh, lw) = vae.latent_dims(frames, height, width)?;
    let video = i2v::condition_video(image, frames, height, width)?;
    let x = Tensor::from_f32(dev, &[1, 3, frames, height, width], video_dtype, &video)?;
    drop(video);
    let moments = vae.encode_tiled(engine, &x, tiles, None)?;
    let (zs, mut lat) = posterior_mode(&moments.to_f32_vec()?, moments.shape())?;
    normalize_latents(&vae.cfg, &mut lat, &zs)?;
    let (_, mask) = i2v::frame_mask(1, frames, lh, lw, vae.cfg.scale_factor_temporal)?;
    i2v::condition(&mask, &lat, t, lh, lw)
}
