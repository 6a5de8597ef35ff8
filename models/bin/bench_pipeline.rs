//! `wan bench --pipeline`: the stages of a generation at a published preset's shapes with
//! synthesized weights, each under the one `--vram` budget and freed after, planned by the pipeline's
//! own per-stage planners (models/pipeline/stages.rs), in the order of diffusers' `WanPipeline` /
//! `WanImageToVideoPipeline.__call__`:
//! - UMT5-XXL on the prompt and the negative prompt (one batch of 2 × 512 tokens);
//! - I2V only: CLIP ViT-H/14 on one 224×224 image (`encode_image`), then the VAE encode (fp32, as the
//!   pipeline runs it) of the condition video, the image then zero frames (`prepare_latents`), giving
//!   the 4 mask + 16 latent condition channels the transformer takes after the 16 noise channels;
//! - `--steps` denoising steps with guidance (one batch-2 forward when the plan holds it, else two;
//!   plus the guided combination), with the CLIP tokens as `encoder_hidden_states_image` for I2V;
//! - the VAE decode (bf16 by default or `--vae-precision fp32`, tiled when the frame does not fit,
//!   chunk by chunk to the host, as `wan generate` does).
//!
//! Each stage is timed warm, as diffusers' side is: after one warm-up run (the VAE's on 2 latent frames,
//! 5 video frames for the encode), its weights already on the device.
//!
//! One JSON line: seconds and peak VRAM per stage (the encoders' setup, pinning and uploads, reported
//! apart as diffusers' side times a loaded model), seconds per step and the 50-step total that follows
//! from them. The scheduler step (a few elementwise kernels on the latents) is not included.

use std::sync::Arc;
use std::time::Instant;

use wanrt::models::pipeline::cfg::combine;
use wanrt::models::pipeline::stages::{plan_stages, StageModels};
use wanrt::models::pipeline::{encode_i2v_condition, CfgBatch, GenerateRequest, ModelDefaults, PipelineKind, PipelineOptions, Stage, StagePlans, Tier};
use wanrt::models::umt5::tokenizer::MAX_SEQUENCE_LENGTH;
use wanrt::models::umt5::{TokenEmbedding, Umt5Config, Umt5EncoderModel};
use wanrt::models::vae::{AutoencoderKLWan, ChunkDownloads, TilePlan, VaeConfig};
use wanrt::models::wan::load::SynthSource;
use wanrt::models::wan::run::{describe, latent_size, round_to};
use wanrt::models::wan::{Inputs, Precision, WanConfig, WanTransformer3DModel};
use wanrt::runtime::offload::{Budget, Engine, HostWeights, Mode, Plan};
use wanrt::runtime::ops;
use wanrt::{DType, Device, Error, Result, Tensor};

use super::encoders::{synth_clip, synth_pixels, synth_tokens};
use super::{engine_for, free_for, gpu, Offload};

/// The guidance scale of the timed steps (diffusers' Wan default).
const GUIDANCE: f32 = 5.0;

/// Runs `f` alone on the device: seconds (host clock around a synchronized run) and peak bytes.
fn stage<T>(dev: &Arc<Device>, f: impl FnOnce() -> Result<T>) -> Result<(T, f64, u64)> {
    dev.synchronize()?;
    dev.reset_peak();
    let t0 = Instant::now();
    let out = f()?;
    dev.synchronize()?;
    Ok((out, t0.elapsed().as_secs_f64(), dev.memory_stats().peak))
}

/// A copy of `t` in `dtype`, in its own allocation (the encoder's arena goes with its engine).
fn keep(t: &Tensor, dtype: DType) -> Result<Tensor> {
    let out = Tensor::empty(t.device(), t.shape(), dtype)?;
    ops::cast(t, &out)?;
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
pub fn bench_pipeline(preset: &str, frames: usize, height: usize, width: usize, precision: Precision, steps: usize, vae_precision: Precision, offload: &Offload) -> Result<()> {
    if steps == 0 {
        return Err(Error::invalid("--steps must be at least 1"));
    }
    if vae_precision == Precision::Fp16 {
        return Err(Error::invalid("--vae-precision: the VAE runs in bf16 or fp32"));
    }
    let cfg = WanConfig::preset(preset)?;
    let (t, h, w) = latent_size(frames, height, width)?;
    let i2v = cfg.is_i2v();
    let umt5 = Umt5EncoderModel::new(&Umt5Config::umt5_xxl(), precision)?;
    let clip = if i2v { Some(synth_clip(precision)?) } else { None };
    let vcfg = VaeConfig::wan2_1();
    // The condition is encoded in fp32, as the pipeline does (PipelineOptions::vae_encode_dtype);
    // --vae-precision is the decode's.
    let vdt = vae_precision.compute();
    let vae = AutoencoderKLWan::new(&vcfg, PipelineOptions::default().vae_encode_dtype, vdt)?;
    let choice = offload.choice();
    let options = PipelineOptions { precision, vae_decode_dtype: vdt, offload: choice, low_ram: offload.low_ram, cfg_batch: CfgBatch::Auto, ..PipelineOptions::default() };
    let kind = if i2v { PipelineKind::I2V } else { PipelineKind::T2V };
    // Guidance always runs here: the prompt and the negative prompt, one batch when the plan holds it.
    let req = GenerateRequest { frames, height, width, guidance: GUIDANCE, ..GenerateRequest::new("", ModelDefaults { kind, tier: Tier::P480 }) };
    let models = StageModels { transformer: &cfg, umt5: &umt5, clip: clip.as_ref(), vae: &vae };
    let planned = |free| plan_stages(&models, &options, &req, choice.budget_bytes(free)?, None);
    // A sized budget is planned before the device opens (a plan that cannot fit needs no GPU to say so).
    let early = match offload.vram {
        Budget::Bytes(_) => Some(planned(None)?),
        Budget::Auto => None,
    };
    let dev = gpu()?;
    super::kernels_compiled();
    let plans = match early {
        Some(p) => p,
        None => planned(free_for(offload.vram, Some(&dev))?)?,
    };
    let condition_summary = plans.summary(Stage::EncodeCondition).unwrap_or_default().to_string();
    let StagePlans { budget, text, image: image_run, condition_tiles, denoise, cfg_batched: batched, decode_tiles: tiles, .. } = plans;
    let text_run = text.ok_or_else(|| Error::invalid("bench --pipeline: no text encoder plan"))?;
    let image_plan = image_run.zip(condition_tiles).map(|(run, tiles)| (run, tiles, condition_summary));
    let base = dev.memory_stats().in_use;
    let dt = precision.compute();
    let gib = |b: u64| round_to(b as f64 / (1u64 << 30) as f64, 3);

    // 1. Text: prompt and negative prompt, 512 positions each (about 20 real tokens).
    eprintln!("encode_text: {}", describe(&text_run, offload.low_ram, false));
    let tokens = synth_tokens(2, MAX_SEQUENCE_LENGTH, 20);
    // Setup (pinning, resident uploads) apart from the encode, as diffusers' side times the encode of
    // a loaded model; one warm-up encode first, as there.
    let (engine, text_setup_s, _) = stage(&dev, || engine_for(&dev, text_run, Arc::new(SynthSource { seed: 0 }), offload.low_ram))?;
    umt5.forward(&engine, &TokenEmbedding::Synth { seed: 1 }, &tokens, None)?;
    let (text, text_s, text_peak) = stage(&dev, || keep(&umt5.forward(&engine, &TokenEmbedding::Synth { seed: 1 }, &tokens, None)?, dt))?;
    drop(engine);

    // 2. I2V: the image through CLIP (diffusers `encode_image`: hidden_states[-2], cast to the
    // transformer dtype), then the condition through the VAE encoder (`prepare_latents`).
    let mut image_record = None;
    let (image_emb, condition) = match (&clip, image_plan) {
        (Some(c), Some((run, condition_tiles, condition_summary))) => {
            eprintln!("encode_image: {}", describe(&run, offload.low_ram, false));
            let pixels = synth_pixels(&c.cfg, 1);
            let (engine, setup_s, _) = stage(&dev, || engine_for(&dev, run, Arc::new(SynthSource { seed: 6 }), offload.low_ram))?;
            c.forward(&engine, &pixels, 1, None)?;
            let (emb, image_s, image_peak) = stage(&dev, || keep(&c.forward(&engine, &pixels, 1, None)?, dt))?;
            drop(engine);

            eprintln!("encode_condition: {}, {condition_summary}", vae.encoder.dtype);
            // The image as `VideoProcessor.preprocess` leaves it: (1, 3, H, W) in [-1, 1].
            let img: Vec<f32> = (0..3 * height * width).map(|i| ((i * 2654435761) % 2001) as f32 / 1000.0 - 1.0).collect();
            dev.set_budget(Some(base.saturating_add(budget)));
            let plan = Plan::new(&vae.encoder.units, Mode::Resident, 0, 0)?;
            let engine = Engine::new(&dev, vae.encoder.units.clone(), plan, HostWeights::pinned(Arc::new(SynthSource { seed: 7 })))?;
            // Warm-up on 5 frames (the first chunk and one later one): the conv kernels are compiled
            // on first use, and diffusers' side is timed warm.
            encode_i2v_condition(&dev, &vae, &engine, &img, (frames.min(5), height, width), vae.encoder.dtype, &condition_tiles)?;
            let (cond, condition_s, condition_peak) =
                stage(&dev, || encode_i2v_condition(&dev, &vae, &engine, &img, (frames, height, width), vae.encoder.dtype, &condition_tiles))?;
            drop(engine);
            image_record = Some((setup_s, image_s, image_peak, condition_s, condition_peak, condition_tiles.describe(vcfg.scale_factor_spatial)));
            (Some(emb), Some(cond))
        }
        _ => (None, None),
    };

    // 3. Denoise: the batch-2 plan when it fits, else two batch-1 forwards per step.
    let model = WanTransformer3DModel::new(&cfg, precision)?;
    eprintln!("denoise ({}): {}", if batched { "one batch-2 forward per step" } else { "two forwards per step" }, describe(&denoise, offload.low_ram, false));
    let b = if batched { 2 } else { 1 };
    let (per_step, loop_s, loop_peak, host) = {
        let z = cfg.out_channels;
        let x = Tensor::empty(&dev, &[b, cfg.in_channels, t, h, w], dt)?;
        ops::fill_uniform(&x, 3, -1.0, 1.0)?;
        if let Some(c) = &condition {
            // `torch.cat([latents, condition], dim=1)`: the condition channels follow the noise's.
            let ct = Tensor::from_f32(&dev, &[1, cfg.in_channels - z, t, h, w], dt, c)?;
            for s in 0..b {
                x.narrow(0, s, 1)?.narrow(1, z, cfg.in_channels - z)?.copy_from(&ct)?;
            }
        }
        // Both guidance branches see the same image tokens.
        let image = match (&image_emb, b) {
            (Some(e), 2) => {
                let out = Tensor::empty(&dev, &[2, e.dim(1), e.dim(2)], dt)?;
                out.narrow(0, 0, 1)?.copy_from(e)?;
                out.narrow(0, 1, 1)?.copy_from(e)?;
                Some(out)
            }
            (e, _) => e.clone(),
        };
        let engine = engine_for(&dev, denoise, Arc::new(SynthSource { seed: 2 }), offload.low_ram)?;
        let lat = [1, z, t, h, w];
        let (scratch, guided) = (Tensor::empty(&dev, &lat, dt)?, Tensor::empty(&dev, &lat, dt)?);
        let fwd = |ctx: Tensor| {
            let inputs = Inputs { hidden_states: x.clone(), timestep: vec![999.0; b], encoder_hidden_states: ctx, encoder_hidden_states_image: image.clone() };
            model.forward(&engine, &inputs, None)
        };
        let step = || -> Result<()> {
            if batched {
                let v = fwd(text.clone())?;
                combine(&v.narrow(0, 0, 1)?, &v.narrow(0, 1, 1)?, GUIDANCE, &scratch, &guided)
            } else {
                let c = keep(&fwd(text.narrow(0, 0, 1)?)?, dt)?;
                let u = fwd(text.narrow(0, 1, 1)?)?;
                combine(&c, &u, GUIDANCE, &scratch, &guided)
            }
        };
        step()?; // warm-up
        let (_, s, peak) = stage(&dev, || (0..steps).try_for_each(|_| step()))?;
        (s / steps as f64, s, peak, engine.host_bytes())
    };
    // The conditioning goes before the decode, as in the pipeline.
    drop((text, image_emb, condition));

    // 4. Decode: resident VAE weights, chunks downloaded as they come.
    let z = Tensor::empty(&dev, &[1, vcfg.z_dim, t, h, w], vdt)?;
    ops::fill_uniform(&z, 4, -1.0, 1.0)?;
    // The denoise engine set the device's cap for its own plan; the decode gets the whole budget.
    dev.set_budget(Some(base.saturating_add(budget)));
    eprintln!("decode: {vdt}, resident weights, {}", tiles.describe(vcfg.scale_factor_spatial));
    let plan = Plan::new(&vae.decoder.units, Mode::Resident, 0, 0)?;
    let engine = Engine::new(&dev, vae.decoder.units.clone(), plan, HostWeights::pinned(Arc::new(SynthSource { seed: 5 })))?;
    // Warm-up on the first two latent frames (the kernels compile on first use; diffusers' decode
    // is timed warm): the resident weights' upload and the kernels stay out of the timed decode.
    {
        let z2 = Tensor::empty(&dev, &[1, vcfg.z_dim, t.min(2), h, w], vdt)?;
        ops::fill_uniform(&z2, 4, -1.0, 1.0)?;
        decode_to_host(&vae, &engine, &z2, &tiles)?;
    }
    let ((), decode_s, decode_peak) = stage(&dev, || decode_to_host(&vae, &engine, &z, &tiles))?;
    drop(engine);

    let (image_s, condition_s) = image_record.as_ref().map(|&(_, i, _, c, _, _)| (i, c)).unwrap_or((0.0, 0.0));
    let mut record = serde_json::json!({
        "bench": "pipeline", "impl": "wanrt", "kind": if i2v { "i2v" } else { "t2v" }, "preset": preset, "device": dev.name(), "frames": frames, "height": height,
        "width": width, "steps": steps, "cfg_batched": batched, "budget_gib": gib(budget),
        "encode_text_s": round_to(text_s, 4), "encode_text_setup_s": round_to(text_setup_s, 3), "vae_precision": vdt.to_string(), "step_s": round_to(per_step, 4), "denoise_s": round_to(loop_s, 3),
        "decode_s": round_to(decode_s, 4), "decode_tiles": tiles.describe(vcfg.scale_factor_spatial),
        "total_50_s": round_to(text_s + image_s + condition_s + 50.0 * per_step + decode_s, 2),
        "peak_gib": {"encode_text": gib(text_peak), "denoise": gib(loop_peak), "decode": gib(decode_peak)},
        "transformer_host_gib": gib(host),
    });
    if let Some((setup_s, image_s, image_peak, condition_s, condition_peak, condition_tiles)) = image_record {
        record["encode_image_s"] = round_to(image_s, 4).into();
        record["encode_condition_tiles"] = condition_tiles.into();
        record["encode_image_setup_s"] = round_to(setup_s, 3).into();
        record["encode_condition_s"] = round_to(condition_s, 4).into();
        record["vae_encode_precision"] = vae.encoder.dtype.to_string().into();
        record["peak_gib"]["encode_image"] = gib(image_peak).into();
        record["peak_gib"]["encode_condition"] = gib(condition_peak).into();
    }
    println!("{record}");
    Ok(())
}

/// The VAE decode as `wan generate` runs it: chunks to host f32 one chunk behind the GPU
/// ([`ChunkDownloads`]), the frames dropped where generate hands them to its writer.
fn decode_to_host(vae: &AutoencoderKLWan, engine: &Engine, z: &Tensor, tiles: &TilePlan) -> Result<()> {
    let mut downloads = ChunkDownloads::new();
    vae.decode_tiled_with(engine, z, tiles, |_, _, chunk| downloads.push(chunk, ()).map(drop), None)?;
    downloads.finish().map(drop)
}
