//! [`Pipeline::generate`]: one request end to end, each stage loading, running and freeing its model
//! in turn under one device budget: text encoding, (I2V) image encoding and the VAE-encoded
//! condition, the denoising loop, and the VAE decode streamed to a [`FrameSink`].

use std::sync::Arc;
use std::time::Instant;

use image::DynamicImage;
use wanrt_runtime::offload::Budget;
use wanrt_runtime::{Device, Error, Result, Tensor};

use super::denoise::{Conditioning, LATENT_DTYPE};
use super::embeds::Embeddings;
use super::noise::TorchGenerator;
use super::output::FrameSink;
use super::load::Pipeline;
use super::progress::{Callbacks, CancelToken, Stage};
use super::report::{GenerateReport, StageReport};
use super::request::{GenerateRequest, SchedulerChoice};
use super::stages::StagePlans;
use crate::vae::tiling::TilePlan;
use crate::clip::preprocess::{load_image, resample_rgb8, to_rgb8_like_pil, Resample};
use crate::vae::{denormalize_latents, ChunkDownloads, HostChunk};

/// Inputs beyond the request, for callers that have them.
#[derive(Clone, Debug, Default)]
pub struct Extras {
    /// Precomputed embeddings instead of running the text (and image) encoder.
    pub embeds: Option<Embeddings>,
    /// The initial latents (1, 16, T, h, w) instead of the seeded noise (diffusers' `latents=`).
    pub latents: Option<Vec<f32>>,
}

/// The I2V image as the pipeline sees it: RGB, resized first (bicubic) when the request asks for the
/// diffusers example's recipe.
pub fn load_request_image(req: &GenerateRequest) -> Result<Option<DynamicImage>> {
    let Some(path) = &req.image else { return Ok(None) };
    let rgb = to_rgb8_like_pil(&load_image(path)?)?;
    let rgb = if req.fit_image { resample_rgb8(&rgb, req.width as u32, req.height as u32, Resample::Bicubic)? } else { rgb };
    Ok(Some(DynamicImage::ImageRgb8(rgb)))
}

/// Times a stage and records its peak device memory.
struct Clock<'a> {
    dev: &'a Arc<Device>,
    stages: Vec<StageReport>,
    peak: u64,
}

impl Clock<'_> {
    fn run<T>(&mut self, stage: Stage, plan: &str, f: impl FnOnce() -> Result<(T, u64)>) -> Result<T> {
        self.dev.synchronize()?;
        self.dev.reset_peak();
        let t0 = Instant::now();
        let (out, host_bytes) = f()?;
        self.dev.synchronize()?;
        let peak = self.dev.memory_stats().peak;
        self.peak = self.peak.max(peak);
        let plan = plan.lines().next().unwrap_or_default().to_string();
        self.stages.push(StageReport { stage, seconds: t0.elapsed().as_secs_f64(), peak_vram_bytes: peak, host_bytes, plan });
        Ok(out)
    }
}

/// The first GPU, with a message that says what needs it.
pub fn device() -> Result<Arc<Device>> {
    Device::get(0).map_err(|e| match e {
        Error::NoDevice(m) => Error::NoDevice(format!("{m}. Generating needs an NVIDIA GPU (compute capability 8.0+) with the CUDA 13 driver")),
        e => e,
    })
}

impl Pipeline {
    /// The budget in bytes: the options' size, or the device's free memory less a margin (`auto`).
    pub fn budget_bytes(&self, dev: Option<&Arc<Device>>) -> Result<u64> {
        let free = match (self.options.offload.budget, dev) {
            (Budget::Auto, Some(d)) => Some(d.mem_info()?.0),
            _ => None,
        };
        self.options.offload.budget_bytes(free)
    }

    /// Runs `req`, handing decoded frames to `sink` as they come. Every check that needs no device
    /// runs first ([`Pipeline::plan`] when the budget is a size). A cancellation through `cancel`
    /// stops at the next step or chunk and returns a report marked `cancelled` (the sink then has
    /// part of the video, or none).
    pub fn generate(&self, req: &GenerateRequest, extras: &Extras, sink: &mut dyn FrameSink, callbacks: &mut dyn Callbacks, cancel: &CancelToken) -> Result<GenerateReport> {
        self.check(req)?;
        let shape = req.latent_shape();
        if let Some(l) = &extras.latents {
            if l.len() != shape.iter().product::<usize>() {
                return Err(Error::Shape { op: "generate", name: "initial latents".into(), expected: format!("{shape:?}"), got: vec![l.len()] });
            }
        }
        let early = match self.options.offload.budget {
            Budget::Bytes(b) => Some(self.plan(req, b, extras.embeds.as_ref())?),
            Budget::Auto => None,
        };
        let image = if self.clip.is_some() { load_request_image(req)? } else { None };
        let dev = device()?;
        let plans = match early {
            Some(p) => p,
            None => self.plan(req, self.budget_bytes(Some(&dev))?, extras.embeds.as_ref())?,
        };
        let before = dev.memory_stats().budget;
        dev.set_budget(Some(dev.memory_stats().in_use.saturating_add(plans.budget)));
        let r = self.run(&dev, req, extras, image.as_ref(), plans, sink, callbacks, cancel);
        dev.set_budget(before);
        r
    }

    #[allow(clippy::too_many_arguments)]
    fn run(
        &self,
        dev: &Arc<Device>,
        req: &GenerateRequest,
        extras: &Extras,
        image: Option<&DynamicImage>,
        plans: StagePlans,
        sink: &mut dyn FrameSink,
        callbacks: &mut dyn Callbacks,
        cancel: &CancelToken,
    ) -> Result<GenerateReport> {
        let t0 = Instant::now();
        let seed = req.seed_or_fresh();
        let StagePlans { budget, text, image: image_run, condition_tiles, denoise, cfg_batched, decode_tiles, summaries, .. } = plans;
        let summary = |s: Stage| summaries.iter().find(|(x, _)| *x == s).map(|(_, t)| t.clone()).unwrap_or_default();
        let mut report = GenerateReport {
            seed,
            frames: req.frames,
            height: req.height,
            width: req.width,
            steps: req.steps,
            guidance: req.guidance,
            shift: req.shift,
            scheduler: match req.scheduler {
                SchedulerChoice::UniPc => "unipc",
                SchedulerChoice::Euler => "euler",
            },
            cfg_batched: req.cfg() && cfg_batched,
            budget_bytes: budget,
            stages: vec![],
            total_s: 0.0,
            peak_vram_bytes: 0,
            host_bytes: 0,
            cancelled: None,
            frames_written: 0,
        };
        let mut clock = Clock { dev, stages: vec![], peak: 0 };
        let finish = |mut report: GenerateReport, clock: Clock<'_>, cancelled: Option<Stage>| {
            report.host_bytes = clock.stages.iter().map(|s| s.host_bytes).max().unwrap_or(0);
            report.stages = clock.stages;
            report.peak_vram_bytes = clock.peak;
            report.total_s = t0.elapsed().as_secs_f64();
            report.cancelled = cancelled;
            report
        };

        // 1. Text.
        for (s, text) in &summaries {
            callbacks.plan(*s, text);
        }
        callbacks.progress(Stage::EncodeText, 0, 1);
        let text = clock.run(Stage::EncodeText, &summary(Stage::EncodeText), || match (&extras.embeds, text) {
            (Some(e), _) => Ok((self.upload_text(dev, e, req)?, 0)),
            (None, Some(run)) => self.encode_text(dev, run, req),
            (None, None) => Err(Error::invalid("no text encoder plan")),
        })?;
        callbacks.progress(Stage::EncodeText, 1, 1);
        if cancel.is_cancelled() {
            return Ok(finish(report, clock, Some(Stage::EncodeText)));
        }

        // 2. I2V: the image embedding and the condition latents.
        let mut cond = Conditioning { text, image: None, condition: None };
        if let Some(img) = image {
            callbacks.progress(Stage::EncodeImage, 0, 1);
            let dt = self.options.precision.compute();
            let emb = clock.run(Stage::EncodeImage, &summary(Stage::EncodeImage), || match (extras.embeds.as_ref().and_then(|e| e.image.as_ref()), image_run) {
                (Some((n, v)), _) => {
                    let d = self.transformer.cfg.image_dim.unwrap_or(0);
                    Ok((Tensor::from_f32(dev, &[1, *n, d], dt, v)?, 0))
                }
                (None, Some(run)) => self.encode_image(dev, run, img),
                (None, None) => Err(Error::invalid("no image encoder plan")),
            })?;
            cond.image = Some(emb);
            callbacks.progress(Stage::EncodeImage, 1, 1);
            callbacks.progress(Stage::EncodeCondition, 0, 1);
            let c = clock.run(Stage::EncodeCondition, &summary(Stage::EncodeCondition), || self.encode_condition(dev, img, req, condition_tiles.as_ref()))?;
            cond.condition = Some(c);
            callbacks.progress(Stage::EncodeCondition, 1, 1);
            if cancel.is_cancelled() {
                return Ok(finish(report, clock, Some(Stage::EncodeCondition)));
            }
        }

        // 3. Denoise, from the seeded noise (a CPU torch.Generator's randn) or the given latents.
        let shape = req.latent_shape();
        let noise = match &extras.latents {
            Some(l) => l.clone(),
            None => TorchGenerator::new(seed).randn(&shape),
        };
        let mut latents = Tensor::from_f32(dev, &shape, LATENT_DTYPE, &noise)?;
        let done = clock.run(Stage::Denoise, &summary(Stage::Denoise), || {
            let (host, done) = self.denoise(dev, denoise, cfg_batched, req, &cond, &mut latents, callbacks, cancel)?;
            Ok((done, host))
        })?;
        drop(cond);
        if !done {
            return Ok(finish(report, clock, Some(Stage::Denoise)));
        }

        // 4. Decode, chunk by chunk into the sink.
        let mut written = 0usize;
        let r = clock.run(Stage::Decode, &summary(Stage::Decode), || self.decode(dev, &latents, &decode_tiles, sink, callbacks, cancel, &mut written));
        report.frames_written = written;
        match r {
            Ok(()) => Ok(finish(report, clock, None)),
            Err(_) if cancel.is_cancelled() => Ok(finish(report, clock, Some(Stage::Decode))),
            Err(e) => Err(e),
        }
    }

    /// diffusers: `latents / (1 / latents_std) + latents_mean` in the VAE dtype, then `vae.decode`
    /// (clamped to [-1, 1]). Here the un-normalization runs in f32 on the host (exact for the fp32 VAE)
    /// and each decoded chunk goes to the sink as soon as it is ready.
    #[allow(clippy::too_many_arguments)]
    fn decode(&self, dev: &Arc<Device>, latents: &Tensor, tiles: &TilePlan, sink: &mut dyn FrameSink, callbacks: &mut dyn Callbacks, cancel: &CancelToken, written: &mut usize) -> Result<((), u64)> {
        let m = &self.vae.model;
        let shape = latents.shape().to_vec();
        let mut host = latents.to_f32_vec()?;
        denormalize_latents(&m.cfg, &mut host, &shape)?;
        let z = Tensor::from_f32(dev, &shape, self.options.vae_decode_dtype, &host)?;
        let engine = self.vae.engine(dev, &m.decoder.units)?;
        let total = shape[2];
        callbacks.progress(Stage::Decode, 0, total);
        let mut chunks = 0;
        let mut downloads = ChunkDownloads::new();
        let mut deliver = |ready: Option<HostChunk<()>>| -> Result<()> {
            if let Some((data, n, ())) = ready {
                sink.frames(data, n)?;
                *written += n;
                chunks += 1;
                callbacks.progress(Stage::Decode, chunks, total);
            }
            Ok(())
        };
        m.decode_tiled_with(
            &engine,
            &z,
            tiles,
            |_, _, chunk| {
                if cancel.is_cancelled() {
                    return Err(Error::invalid("cancelled"));
                }
                deliver(downloads.push(chunk, ())?)
            },
            None,
        )?;
        deliver(downloads.finish()?)?;
        Ok(((), engine.host_bytes()))
    }
}
