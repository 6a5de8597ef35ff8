//! `wan bench-encoder`: UMT5-XXL or CLIP ViT-H/14 with synthesized weights at the published shapes,
//! timed like `wan bench` (CUDA events, median after a warm-up), planned for `--vram` like the
//! transformer. One JSON line: seconds per encode, peak VRAM, host RAM, setup, the H2D rate and the
//! transfer floor (streamed bytes / that rate).

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use wanrt::models::clip::{ClipVisionConfig, ClipVisionModel};
use wanrt::models::umt5::{TokenBatch, TokenEmbedding, Umt5Config, Umt5EncoderModel};
use wanrt::models::wan::load::SynthSource;
use wanrt::models::wan::run::{describe, PlannedRun};
use wanrt::models::wan::Precision;
use wanrt::runtime::offload::{plan_for, ModelUnits};
use wanrt::{Error, Result};

use super::{engine_for, gpu, h2d_rate, median, Offload};

/// Which encoder `wan bench-encoder` times.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum EncoderChoice {
    /// google/umt5-xxl's encoder (Wan's text encoder).
    Umt5Xxl,
    /// laion CLIP ViT-H/14 (Wan I2V's image encoder), up to its penultimate layer.
    #[value(name = "clip-vit-h-14")]
    ClipVitH14,
}

#[derive(Serialize)]
struct EncoderRecord {
    bench: &'static str,
    #[serde(rename = "impl")]
    implementation: &'static str,
    model: &'static str,
    mode: String,
    batch: usize,
    tokens: usize,
    s: f64,
    peak_gib: f64,
    weight_gib: f64,
    host_gib: f64,
    setup_s: f64,
    h2d_gbps: f64,
    transfer_floor_s: f64,
}

enum Model {
    Umt5(Umt5EncoderModel),
    Clip(ClipVisionModel),
}

pub fn bench_encoder(which: EncoderChoice, batch: usize, tokens: usize, real_tokens: usize, precision: Precision, iters: usize, offload: &Offload) -> Result<()> {
    if batch == 0 || tokens == 0 || real_tokens == 0 || real_tokens > tokens {
        return Err(Error::invalid(format!("--batch {batch}, --tokens {tokens}, --prompt-tokens {real_tokens}: all positive, prompt tokens at most tokens")));
    }
    let choice = offload.choice();
    let prefs = choice.prefs()?;
    let (model, act, name, units): (Model, u64, &str, ModelUnits) = match which {
        EncoderChoice::Umt5Xxl => {
            let m = Umt5EncoderModel::new(&Umt5Config::umt5_xxl(), precision)?;
            let act = m.activation_peak(batch, tokens)?;
            let u = m.units().clone();
            (Model::Umt5(m), act, "umt5-xxl", u)
        }
        EncoderChoice::ClipVitH14 => {
            let m = ClipVisionModel::new(&ClipVisionConfig::vit_h_14(), precision)?;
            let act = m.activation_peak(batch)?;
            let u = m.units().clone();
            (Model::Clip(m), act, "clip-vit-h-14", u)
        }
    };
    let dev = gpu()?;
    let budget = choice.budget_bytes(super::free_for(offload.vram, Some(&dev))?)?;
    let plan = plan_for(&units, budget, act, prefs)?;
    let run = PlannedRun { units, plan, activation_peak: act };
    eprintln!("{name} on {}\n{}", dev.name(), describe(&run, offload.low_ram, false));
    let (weight_bytes, streamed) = (run.units.total_bytes(), run.plan.streamed_bytes());
    let mode = format!("{}{}", run.plan.mode(), if run.plan.ring_bytes().is_some() { ", byte ring" } else { "" });
    let (rate, _) = h2d_rate(&dev, false)?;
    let t0 = Instant::now();
    let engine = engine_for(&dev, run, Arc::new(SynthSource { seed: 0 }), offload.low_ram)?;
    let setup_s = t0.elapsed().as_secs_f64();
    let host = engine.host_bytes();
    let (encode, n): (Box<dyn Fn() -> Result<()>>, usize) = match &model {
        Model::Umt5(m) => {
            // A prompt of `real_tokens` (EOS included) padded to `tokens`, like the pipeline's.
            let ids: Vec<i64> = (0..tokens).map(|j| if j + 1 < real_tokens { 2 + (j as i64 * 7919) % 200_000 } else if j + 1 == real_tokens { 1 } else { 0 }).collect();
            let mask: Vec<i64> = (0..tokens).map(|j| (j < real_tokens) as i64).collect();
            let batch_tokens = TokenBatch { ids: vec![ids; batch], mask: vec![mask; batch] };
            let emb = TokenEmbedding::Synth { seed: 1 };
            (Box::new(move || m.forward(&engine, &emb, &batch_tokens, None).map(drop)), tokens)
        }
        Model::Clip(m) => {
            let s = m.cfg.image_size;
            let pixels: Vec<f32> = (0..batch * 3 * s * s).map(|i| ((i * 2654435761) % 4001) as f32 / 1000.0 - 2.0).collect();
            (Box::new(move || m.forward(&engine, &pixels, batch, None).map(drop)), m.cfg.tokens())
        }
    };
    dev.synchronize()?;
    dev.reset_peak();
    encode()?;
    dev.synchronize()?;
    let mut times = Vec::new();
    for _ in 0..iters.max(1) {
        let start = dev.compute().record_timed()?;
        encode()?;
        let end = dev.compute().record_timed()?;
        times.push(end.elapsed_ms(&start)? as f64 / 1e3);
    }
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    let record = EncoderRecord {
        bench: "encoder",
        implementation: "wanrt",
        model: name,
        mode,
        batch,
        tokens: n,
        s: median(times),
        peak_gib: gib(dev.memory_stats().peak),
        weight_gib: gib(weight_bytes),
        host_gib: gib(host),
        setup_s,
        h2d_gbps: rate / 1e9,
        transfer_floor_s: streamed as f64 / rate,
    };
    println!("{}", serde_json::to_string(&record).map_err(|e| Error::invalid(format!("bench record: {e}")))?);
    Ok(())
}
