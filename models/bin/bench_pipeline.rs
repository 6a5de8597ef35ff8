//! `wan bench --pipeline`: the stages of a T2V generation at a published preset's shapes with
//! synthesized weights, each under the one `--vram` budget and freed after: UMT5-XXL on the prompt and
//! the negative prompt (one batch of 2 × 512 tokens), `--steps` denoising steps with guidance (one
//! batch-2 forward when the plan holds it, else two; plus the guided combination), and the VAE decode
//! (bf16 by default or `--vae-precision fp32`, tiled when the frame does not fit, chunk by chunk to the
//! host, as `wan generate` does). One JSON line: seconds and peak VRAM per stage (the text encoder's
//! setup, pinning and uploads, reported apart as diffusers' side times a loaded model), seconds per
//! step and the 50-step total that follows from them.
//! The scheduler step (a few elementwise kernels on the latents) is not included.

use std::sync::Arc;
use std::time::Instant;

use wanrt::models::pipeline::cfg::combine;
use wanrt::models::umt5::{TokenBatch, TokenEmbedding, Umt5Config, Umt5EncoderModel};
use wanrt::models::vae::tiling::TilePlan;
use wanrt::models::vae::{AutoencoderKLWan, VaeConfig};
use wanrt::models::wan::load::SynthSource;
use wanrt::models::wan::run::{describe, latent_size, plan_latents, round_to, PlannedRun};
use wanrt::models::wan::{Inputs, Precision, WanConfig, WanTransformer3DModel};
use wanrt::runtime::offload::{plan_for, Engine, HostWeights, Mode, Plan};
use wanrt::runtime::ops;
use wanrt::{DType, Device, Error, Result, Tensor};

use super::{engine_for, gpu, free_for, Offload};

/// Runs `f` alone on the device: seconds (host clock around a synchronized run) and peak bytes.
fn stage<T>(dev: &Arc<Device>, f: impl FnOnce() -> Result<T>) -> Result<(T, f64, u64)> {
    dev.synchronize()?;
    dev.reset_peak();
    let t0 = Instant::now();
    let out = f()?;
    dev.synchronize()?;
    Ok((out, t0.elapsed().as_secs_f64(), dev.memory_stats().peak))
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
    if cfg.is_i2v() {
        return Err(Error::invalid(format!("{preset}: --pipeline times the T2V pipeline; give a wan2.1-t2v preset")));
    }
    let (t, h, w) = latent_size(frames, height, width)?;
    let dev = gpu()?;
    let choice = offload.choice();
    let free = free_for(offload.vram, Some(&dev))?;
    let budget = choice.budget_bytes(free)?;
    let dt = precision.compute();
    let gib = |b: u64| round_to(b as f64 / (1u64 << 30) as f64, 3);

    // 1. Text: prompt and negative prompt, 512 positions each (about 20 real tokens).
    let umt5 = Umt5EncoderModel::new(&Umt5Config::umt5_xxl(), precision)?;
    let act = umt5.activation_peak(2, 512)?;
    let run = PlannedRun { units: umt5.units().clone(), plan: plan_for(umt5.units(), budget, act, choice.prefs()?)?, activation_peak: act };
    eprintln!("encode_text: {}", describe(&run, offload.low_ram, false));
    let ids: Vec<i64> = (0..512).map(|j| if j < 19 { 2 + j * 7919 } else if j == 19 { 1 } else { 0 }).collect();
    let mask: Vec<i64> = (0..512).map(|j| (j < 20) as i64).collect();
    let tokens = TokenBatch { ids: vec![ids; 2], mask: vec![mask; 2] };
    // Setup (pinning, resident uploads) apart from the encode, as diffusers' side times the encode of
    // a loaded model; one warm-up encode first, as there.
    let (engine, text_setup_s, _) = stage(&dev, || engine_for(&dev, run, Arc::new(SynthSource { seed: 0 }), offload.low_ram))?;
    umt5.forward(&engine, &TokenEmbedding::Synth { seed: 1 }, &tokens, None)?;
    let (text, text_s, text_peak) = stage(&dev, || {
        let out = umt5.forward(&engine, &TokenEmbedding::Synth { seed: 1 }, &tokens, None)?;
        let text = Tensor::empty(&dev, out.shape(), dt)?;
        ops::cast(&out, &text)?;
        Ok(text)
    })?;

    drop(engine);

    // 2. Denoise: the batch-2 plan when it fits, else two batch-1 forwards per step.
    let model = WanTransformer3DModel::new(&cfg, precision)?;
    let (run, batched) = match plan_latents(&cfg, precision, 2, (t, h, w), &choice, free) {
        Ok(r) => (r, true),
        Err(_) => (plan_latents(&cfg, precision, 1, (t, h, w), &choice, free)?, false),
    };
    eprintln!("denoise ({}): {}", if batched { "one batch-2 forward per step" } else { "two forwards per step" }, describe(&run, offload.low_ram, false));
    let b = if batched { 2 } else { 1 };
    let (per_step, loop_s, loop_peak, host) = {
        let engine = engine_for(&dev, run, Arc::new(SynthSource { seed: 2 }), offload.low_ram)?;
        let x = Tensor::empty(&dev, &[b, cfg.in_channels, t, h, w], dt)?;
        ops::fill_uniform(&x, 3, -1.0, 1.0)?;
        let lat = [1, cfg.out_channels, t, h, w];
        let (scratch, guided) = (Tensor::empty(&dev, &lat, dt)?, Tensor::empty(&dev, &lat, dt)?);
        let fwd = |ctx: Tensor| model.forward(&engine, &Inputs { hidden_states: x.clone(), timestep: vec![999.0; b], encoder_hidden_states: ctx, encoder_hidden_states_image: None }, None);
        let step = || -> Result<()> {
            if batched {
                let v = fwd(text.clone())?;
                combine(&v.narrow(0, 0, 1)?, &v.narrow(0, 1, 1)?, 5.0, &scratch, &guided)
            } else {
                let c = Tensor::empty(&dev, &lat, dt)?;
                ops::cast(&fwd(text.narrow(0, 0, 1)?)?, &c)?;
                let u = fwd(text.narrow(0, 1, 1)?)?;
                combine(&c, &u, 5.0, &scratch, &guided)
            }
        };
        step()?; // warm-up
        let (_, s, peak) = stage(&dev, || (0..steps).try_for_each(|_| step()))?;
        (s / steps as f64, s, peak, engine.host_bytes())
    };

    // 3. Decode: resident VAE weights, chunks downloaded as they come.
    let vcfg = VaeConfig::wan2_1();
    let vdt = vae_precision.compute();
    let vae = AutoencoderKLWan::new(&vcfg, DType::F32, vdt)?;
    let z = Tensor::empty(&dev, &[1, vcfg.z_dim, t, h, w], vdt)?;
    ops::fill_uniform(&z, 4, -1.0, 1.0)?;
    // The denoise engine set the device's cap for its own plan; the decode gets the whole budget.
    dev.set_budget(Some(dev.memory_stats().in_use.saturating_add(budget)));
    // As the pipeline plans it: untiled when the whole frame fits, else the tiles of least work.
    let overhead = vae.decoder.units.total_bytes() + 32 * (1 << 20) + z.numel() * vdt.size() as u64;
    let tiles = match overhead + vae.decode_activation_bytes(t, h, w)? <= budget {
        true => TilePlan::untiled(h, w),
        false => vae.plan_decode_tiles(t, h, w, Some(budget), overhead, None)?,
    };
    eprintln!("decode: {vdt}, resident weights, {}", tiles.describe(vcfg.scale_factor_spatial));
    let ((), decode_s, decode_peak) = stage(&dev, || {
        let plan = Plan::new(&vae.decoder.units, Mode::Resident, 0, 0)?;
        let engine = Engine::new(&dev, vae.decoder.units.clone(), plan, HostWeights::pinned(Arc::new(SynthSource { seed: 5 })))?;
        vae.decode_tiled_with(&engine, &z, &tiles, |_, _, chunk| chunk.to_f32_vec().map(drop), None)
    })?;

    let record = serde_json::json!({
        "bench": "pipeline", "impl": "wanrt", "preset": preset, "device": dev.name(), "frames": frames, "height": height,
        "width": width, "steps": steps, "cfg_batched": batched, "budget_gib": gib(budget),
        "encode_text_s": round_to(text_s, 4), "encode_text_setup_s": round_to(text_setup_s, 3), "vae_precision": vdt.to_string(), "step_s": round_to(per_step, 4), "denoise_s": round_to(loop_s, 3),
        "decode_s": round_to(decode_s, 4), "decode_tiles": tiles.describe(vcfg.scale_factor_spatial), "total_50_s": round_to(text_s + 50.0 * per_step + decode_s, 2),
        "peak_gib": {"encode_text": gib(text_peak), "denoise": gib(loop_peak), "decode": gib(decode_peak)},
        "transformer_host_gib": gib(host),
    });
    println!("{record}");
    Ok(())
}
