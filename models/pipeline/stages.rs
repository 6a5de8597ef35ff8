//! The device plan of each stage, made before any device work: every stage runs alone under the one
//! `--vram` budget, less what earlier stages leave on the device for later ones (embeddings,
//! latents, the scheduler's history). The encoders take the fastest plan that fits; the transformer
//! the user's placement; the VAE runs resident (0.5 GB of weights in fp32); its encode of the I2V
//! condition and its decode are tiled spatially (bit-identical to untiled) when the whole frame's
//! activations do not fit.

use wanrt_runtime::offload::{fmt_bytes, plan_for, Budget, ModelUnits};
use wanrt_runtime::{DType, Error, Result};

use super::embeds::Embeddings;
use super::load::{CfgBatch, Pipeline, PipelineOptions};
use super::progress::Stage;
use super::request::GenerateRequest;
use crate::clip::ClipVisionModel;
use crate::umt5::tokenizer::MAX_SEQUENCE_LENGTH;
use crate::umt5::Umt5EncoderModel;
use crate::vae::tiling::TilePlan;
use crate::vae::AutoencoderKLWan;
use crate::wan::run::{describe, plan_latents, OffloadChoice, PlannedRun};
use crate::wan::{Precision, WanConfig};
use crate::wan::transformer::IMAGE_TOKENS;

/// cuBLASLt's workspace on the compute stream, allocated with the first GEMM (runtime/gpu/blas.rs).
pub const GEMM_WORKSPACE: u64 = 32 << 20;

/// Device allocations are charged in multiples of 256 bytes.
pub fn charged(elems: usize, dtype: DType) -> u64 {
    (elems as u64 * dtype.size() as u64).div_ceil(256) * 256
}

/// The plans of one generation.
#[derive(Debug)]
pub struct StagePlans {
    /// The budget every stage shares.
    pub budget: u64,
    /// UMT5 (absent with precomputed text embeddings).
    pub text: Option<PlannedRun>,
    /// Prompts encoded in one batch: 2 with classifier-free guidance.
    pub text_batch: usize,
    /// CLIP (I2V without precomputed image embeddings).
    pub image: Option<PlannedRun>,
    /// VAE encode of the I2V condition: device bytes it needs.
    pub condition_bytes: Option<u64>,
    /// VAE encode of the I2V condition: its spatial tiles (untiled when the whole frame fits).
    pub condition_tiles: Option<TilePlan>,
    pub denoise: PlannedRun,
    /// Both guidance branches in one batch-2 forward.
    pub cfg_batched: bool,
    /// VAE decode: device bytes it needs.
    pub decode_bytes: u64,
    /// VAE decode: its spatial tiles (untiled when the whole frame fits).
    pub decode_tiles: TilePlan,
    /// One summary per stage, in order.
    pub summaries: Vec<(Stage, String)>,
}

impl StagePlans {
    pub fn summary(&self, stage: Stage) -> Option<&str> {
        self.summaries.iter().find(|(s, _)| *s == stage).map(|(_, t)| t.as_str())
    }
}

/// What is left of `budget` once `carried` bytes stay on the device.
pub fn left(budget: u64, carried: u64, stage: Stage) -> Result<u64> {
    budget.checked_sub(carried).filter(|&b| b > 0).ok_or_else(|| {
        Error::invalid(format!("--vram {}: the {} stage starts with {} already on the device (embeddings, latents)", fmt_bytes(budget), stage.name(), fmt_bytes(carried)))
    })
}

/// A VAE stage needing `need` bytes in `avail`: its summary, or an error naming both.
pub fn vae_fits(need: u64, avail: u64, what: &str) -> Result<String> {
    if need > avail {
        return Err(Error::invalid(format!(
            "{what} needs {} of device memory (resident weights, activations, cuBLASLt workspace, input and output); {} of the budget are left for it",
            fmt_bytes(need),
            fmt_bytes(avail)
        )));
    }
    Ok(format!("resident, {} of the {} left", fmt_bytes(need), fmt_bytes(avail)))
}

/// The device plan of an encoder (UMT5, CLIP) with `activation_peak` bytes of activations in `avail`
/// bytes: the fastest placement that fits, whatever the transformer's `--offload` says.
pub fn plan_encoder(units: &ModelUnits, activation_peak: u64, avail: u64) -> Result<PlannedRun> {
    let prefs = OffloadChoice { budget: Budget::Bytes(avail), ..OffloadChoice::default() }.prefs()?;
    let plan = plan_for(units, avail, activation_peak, prefs)?;
    Ok(PlannedRun { units: units.clone(), plan, activation_peak })
}

/// The prompt embeddings kept on the device after the text stage: (batch, 512, text_dim).
pub fn text_embedding_bytes(batch: usize, text_dim: usize, dtype: DType) -> u64 {
    charged(batch * MAX_SEQUENCE_LENGTH * text_dim, dtype)
}

/// The image embeddings kept on the device after the image stage: (1, tokens, image_dim).
pub fn image_embedding_bytes(tokens: usize, image_dim: usize, dtype: DType) -> u64 {
    charged(tokens * image_dim, dtype)
}

/// What the VAE encode of the I2V condition (diffusers `WanImageToVideoPipeline.prepare_latents`)
/// needs besides its activations: the resident encoder weights, the cuBLASLt workspace, the
/// (1, 3, frames, H, W) video upload in `video_dtype` and the f32 moments (1, 32, T, h, w).
pub fn condition_overhead(vae: &AutoencoderKLWan, frames: usize, height: usize, width: usize, video_dtype: DType) -> Result<u64> {
    let (t, h, w) = vae.latent_dims(frames, height, width)?;
    Ok(vae.encoder.units.total_bytes() + GEMM_WORKSPACE + charged(3 * frames * height * width, video_dtype) + charged(2 * vae.cfg.z_dim * t * h * w, DType::F32))
}

/// Device bytes of the untiled VAE encode of the I2V condition: [`condition_overhead`] and its activations.
pub fn condition_bytes(vae: &AutoencoderKLWan, frames: usize, height: usize, width: usize, video_dtype: DType) -> Result<u64> {
    Ok(condition_overhead(vae, frames, height, width, video_dtype)? + vae.encode_activation_bytes(frames, height, width)?)
}

/// The VAE encode of the I2V condition with `avail` bytes: untiled when the whole frame's activations
/// fit (on whole chunks where they fit, else frame by frame), else the spatial tiles of least work that do. Returns the tiles and the device bytes the
/// encode needs (`budget` is the run's, for the error).
pub fn plan_condition(vae: &AutoencoderKLWan, (frames, height, width): (usize, usize, usize), video_dtype: DType, avail: u64, budget: u64) -> Result<(TilePlan, u64)> {
    let (_, h, w) = vae.latent_dims(frames, height, width)?;
    let overhead = condition_overhead(vae, frames, height, width, video_dtype)?;
    // Untiled, on whole chunks where they fit (faster), else frame by frame.
    for plan in TilePlan::untiled(h, w).layouts() {
        let bytes = overhead + vae.encode_tiled_bytes(frames, height, width, &plan)?;
        if bytes <= avail {
            return Ok((plan, bytes));
        }
    }
    let tiles = match vae.plan_encode_tiles(frames, height, width, Some(avail), overhead, None) {
        Ok(t) => t,
        Err(e) => {
            // No tiling fits: name the least the smallest tiles need, as for a stage that runs untiled.
            let least = overhead + vae.encode_least_bytes(frames, height, width)?;
            let e = vae_fits(least, avail, "the VAE encode of the I2V condition").err().unwrap_or(e);
            return Err(Error::invalid(format!("--vram {}: {e} (in its smallest spatial tiles)", fmt_bytes(budget))));
        }
    };
    let bytes = overhead + vae.encode_tiled_bytes(frames, height, width, &tiles)?;
    Ok((tiles, bytes))
}

/// A VAE stage's summary: [`vae_fits`], and the plan: untiled or its tiles, and the layout.
pub fn vae_summary(need: u64, avail: u64, what: &str, tiles: &TilePlan, scale: usize) -> Result<String> {
    let mut text = vae_fits(need, avail, what)?;
    text.push_str(&format!("; {}", tiles.describe(scale)));
    if !tiles.is_untiled() || tiles.stream {
        text.push_str(" (bit-identical to untiled on whole chunks)");
    }
    Ok(text)
}

/// What stays on the device through the denoising loop besides the transformer's own inputs (counted
/// in its activation estimate): the fp32 latents (1, z, T, h, w), the scheduler's three history
/// buffers, the guided prediction, its scratch and the kept conditional output, and for I2V the
/// condition's upload (20 channels in the transformer dtype).
pub fn denoise_carried(latent: &[usize; 4], i2v: bool, dtype: DType) -> u64 {
    let [z, t, h, w] = *latent;
    8 * charged(z * t * h * w, DType::F32) + if i2v { charged(20 * t * h * w, dtype) } else { 0 }
}

/// The transformer's plan on latents of (T, h, w) under `choice`, and whether guidance runs as one
/// batch-2 forward (`cfg_on`) or two batch-1 forwards per step, as `cfg_batch` asks.
pub fn plan_denoise(cfg: &WanConfig, precision: Precision, latent: (usize, usize, usize), choice: &OffloadChoice, cfg_on: bool, cfg_batch: CfgBatch) -> Result<(PlannedRun, bool)> {
    let single = plan_latents(cfg, precision, 1, latent, choice, None)?;
    Ok(match (cfg_on, cfg_batch) {
        (false, _) | (true, CfgBatch::Split) => (single, false),
        (true, CfgBatch::Batched) => (plan_latents(cfg, precision, 2, latent, choice, None)?, true),
        (true, CfgBatch::Auto) => match plan_latents(cfg, precision, 2, latent, choice, None) {
            // Two batch-1 forwards stream the weights twice per step; one batch-2 forward once.
            Ok(pair) if pair.plan.streamed_bytes() == 0 || (single.plan.streamed_bytes() > 0 && pair.plan.streamed_bytes() <= 2 * single.plan.streamed_bytes()) => (pair, true),
            _ => (single, false),
        },
    })
}

/// The VAE decode of latents (1, z, T, h, w) held in `z_dtype` with `avail` bytes: untiled when the
/// whole frame's activations fit (on whole chunks where they fit, else frame by frame), else the spatial tiles of least work that do. Returns the tiles and
/// the device bytes the decode needs (`budget` is the run's, for the error).
pub fn plan_decode(vae: &AutoencoderKLWan, (t, h, w): (usize, usize, usize), z_dtype: DType, avail: u64, budget: u64) -> Result<(TilePlan, u64)> {
    let overhead = vae.decoder.units.total_bytes() + GEMM_WORKSPACE + charged(vae.cfg.z_dim * t * h * w, z_dtype);
    for plan in TilePlan::untiled(h, w).layouts() {
        let bytes = overhead + vae.decode_tiled_bytes(t, h, w, &plan)?;
        if bytes <= avail {
            return Ok((plan, bytes));
        }
    }
    let tiles = vae.plan_decode_tiles(t, h, w, Some(avail), overhead, None).map_err(|e| Error::invalid(format!("--vram {}: {e}", fmt_bytes(budget))))?;
    let bytes = overhead + vae.decode_tiled_bytes(t, h, w, &tiles)?;
    Ok((tiles, bytes))
}

impl Pipeline {
    /// Plans every stage of `req` under `budget` bytes. Needs no GPU.
    pub fn plan(&self, req: &GenerateRequest, budget: u64, embeds: Option<&Embeddings>) -> Result<StagePlans> {
        self.check(req)?;
        let models = StageModels { transformer: &self.transformer.cfg, umt5: &self.umt5, clip: self.clip.as_ref().map(|c| &c.model), vae: &self.vae.model };
        plan_stages(&models, &self.options, req, budget, embeds)
    }
}

/// The models a generation's stage plans are made for: a loaded [`Pipeline`]'s, or the synthesized
/// ones of `wan bench --pipeline`.
pub struct StageModels<'m> {
    pub transformer: &'m WanConfig,
    pub umt5: &'m Umt5EncoderModel,
    /// I2V only.
    pub clip: Option<&'m ClipVisionModel>,
    pub vae: &'m AutoencoderKLWan,
}

/// Plans every stage of `req` (checked) with `models` and options `o` under `budget` bytes, each
/// stage given the budget less what earlier stages leave on the device for later ones. Needs no GPU.
pub fn plan_stages(models: &StageModels<'_>, o: &PipelineOptions, req: &GenerateRequest, budget: u64, embeds: Option<&Embeddings>) -> Result<StagePlans> {
    let cfg = models.transformer;
    let dt = o.precision.compute();
    let cfg_on = req.cfg();
    if let (true, Some(e)) = (cfg_on, embeds) {
        if e.negative.is_none() {
            return Err(Error::File { path: e.path.clone(), msg: format!("guidance {} runs classifier-free guidance and needs negative_prompt_embeds (or --guidance 1)", req.guidance) });
        }
    }
    let mut summaries = Vec::new();
    let text_batch = 1 + cfg_on as usize;
    let text_bytes = text_embedding_bytes(text_batch, cfg.text_dim, dt);

    let text = match embeds {
        Some(_) => {
            summaries.push((Stage::EncodeText, "precomputed embeddings".to_string()));
            None
        }
        None => {
            let run = plan_encoder(models.umt5.units(), models.umt5.activation_peak(text_batch, MAX_SEQUENCE_LENGTH)?, budget)?;
            summaries.push((Stage::EncodeText, describe(&run, o.low_ram, false)));
            Some(run)
        }
    };

    let i2v = models.clip.is_some();
    let image_tokens = embeds.and_then(|e| e.image.as_ref().map(|(n, _)| *n)).unwrap_or(IMAGE_TOKENS);
    let image_bytes = if i2v { image_embedding_bytes(image_tokens, cfg.image_dim.unwrap_or(0), dt) } else { 0 };
    let image = match (models.clip, embeds.and_then(|e| e.image.as_ref())) {
        (Some(c), None) => {
            let avail = left(budget, text_bytes, Stage::EncodeImage)?;
            let run = plan_encoder(c.units(), c.activation_peak(1)?, avail)?;
            summaries.push((Stage::EncodeImage, describe(&run, o.low_ram, false)));
            Some(run)
        }
        (Some(_), Some(_)) => {
            summaries.push((Stage::EncodeImage, "precomputed image embeddings".to_string()));
            None
        }
        (None, _) => None,
    };

    let [_, z, t, h, w] = req.latent_shape();
    let latent = charged(z * t * h * w, DType::F32);
    let vae = models.vae;
    let ss = vae.cfg.scale_factor_spatial;
    let (condition_tiles, condition_bytes) = if i2v {
        let avail = left(budget, text_bytes + image_bytes, Stage::EncodeCondition)?;
        let (tiles, need) = plan_condition(vae, (req.frames, req.height, req.width), o.vae_encode_dtype, avail, budget)?;
        summaries.push((Stage::EncodeCondition, vae_summary(need, avail, "the VAE encode of the I2V condition", &tiles, ss)?));
        (Some(tiles), Some(need))
    } else {
        (None, None)
    };

    let avail = left(budget, denoise_carried(&[z, t, h, w], i2v, dt), Stage::Denoise)?;
    let choice = OffloadChoice { budget: Budget::Bytes(avail), ..o.offload };
    let (denoise, cfg_batched) = plan_denoise(cfg, o.precision, (t, h, w), &choice, cfg_on, o.cfg_batch)?;
    let cfg_text = match (cfg_on, cfg_batched) {
        (false, _) => "no classifier-free guidance",
        (true, true) => "guidance: one batch-2 forward per step",
        (true, false) => "guidance: two batch-1 forwards per step",
    };
    summaries.push((Stage::Denoise, format!("{}\n{cfg_text}", describe(&denoise, o.low_ram, false))));

    let avail = left(budget, latent, Stage::Decode)?;
    let (decode_tiles, decode_bytes) = plan_decode(vae, (t, h, w), o.vae_decode_dtype, avail, budget)?;
    summaries.push((Stage::Decode, vae_summary(decode_bytes, avail, "the VAE decode", &decode_tiles, ss)?));
    Ok(StagePlans { budget, text, text_batch, image, condition_bytes, condition_tiles, denoise, cfg_batched, decode_bytes, decode_tiles, summaries })
}
