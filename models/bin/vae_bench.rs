//! `wan bench-vae`: the Wan2.1 VAE (diffusers `AutoencoderKLWan` at its published shapes, weights
//! synthesized) timed on one video size: decode or encode (untiled, or tiled by `--vram` / `--tile`),
//! with the device peak, the activation bytes the arena allocates, and for decode the decoder's FLOPs
//! and the floor they make at the bf16 GEMM rate measured in the same run (cuBLASLt, 8192³). One JSON
//! line on stdout. diffusers' side: `python3 benches/vae_diffusers.py`.

use std::sync::Arc;
use std::time::Instant;

use wanrt::models::vae::{AutoencoderKLWan, TilePlan, VaeConfig};
use wanrt::models::wan::load::SynthSource;
use wanrt::models::wan::Precision;
use wanrt::runtime::offload::{fmt_bytes, Budget, Engine, HostWeights, Mode, Plan};
use wanrt::runtime::ops;
use wanrt::{DType, Device, Result, Tensor};

use super::vae::{fit, round, GEMM_WORKSPACE};

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum VaeOp {
    Decode,
    Encode,
}

/// `--layout`: the planner's choice, or one layout forced (models/vae/tiling.rs, `TilePlan::stream`).
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum VaeLayout {
    /// Whole chunks where the budget holds them (the faster), else frame by frame.
    Auto,
    /// The decoder's tail / the encoder's frames part one frame at a time (least memory).
    Frames,
    /// Those parts on whole 4-frame chunks.
    Chunks,
}

impl VaeLayout {
    fn apply(self, tiles: TilePlan) -> TilePlan {
        match self {
            VaeLayout::Auto => tiles,
            VaeLayout::Frames => TilePlan { stream: true, ..tiles },
            VaeLayout::Chunks => tiles.whole_chunks(),
        }
    }
}

/// Seconds of each of `iters` runs of `f` (after one warm-up), by events on the compute stream.
fn timed(dev: &Arc<Device>, iters: usize, mut f: impl FnMut() -> Result<()>) -> Result<Vec<f64>> {
    f()?;
    dev.synchronize()?;
    let mut out = Vec::new();
    for _ in 0..iters.max(1) {
        let start = dev.compute().record_timed()?;
        f()?;
        let end = dev.compute().record_timed()?;
        out.push(end.elapsed_ms(&start)? as f64 / 1e3);
    }
    Ok(out)
}

/// cuBLASLt's dense bf16 rate on this card (TFLOP/s, 8192³), the FLOP floor's denominator.
fn gemm_tflops(dev: &Arc<Device>) -> Result<f64> {
    let n = 8192usize;
    let fill = |seed: u64| -> Result<Tensor> {
        let t = Tensor::empty(dev, &[n, n], DType::BF16)?;
        ops::fill_uniform(&t, seed, -1.0, 1.0)?;
        Ok(t)
    };
    let (a, b, out) = (fill(1)?, fill(2)?, Tensor::empty(dev, &[n, n], DType::BF16)?);
    let s = timed(dev, 5, || ops::linear(&a, &b, None, &out))?;
    let best = s.iter().cloned().fold(f64::INFINITY, f64::min);
    Ok(2.0 * (n as f64).powi(3) / best / 1e12)
}

/// `wan bench-vae`.
#[allow(clippy::too_many_arguments)]
pub fn bench_vae(op: VaeOp, frames: usize, height: usize, width: usize, precision: Precision, vram: Budget, tile: Option<usize>, iters: usize, layout: VaeLayout) -> Result<()> {
    let dt = precision.compute();
    let m = AutoencoderKLWan::new(&VaeConfig::wan2_1(), dt, dt)?;
    let (t, h, w) = m.latent_dims(frames, height, width)?;
    let units = match op {
        VaeOp::Decode => &m.decoder.units,
        VaeOp::Encode => &m.encoder.units,
    };
    let weights = units.total_bytes();
    let budget = match vram {
        Budget::Bytes(b) => Some(b),
        Budget::Auto => None,
    };
    let (input, tiles, act) = match op {
        VaeOp::Decode => {
            let input = round(4 * (16 * t * h * w) as u64);
            let tiles = m.plan_decode_tiles(t, h, w, budget, weights + GEMM_WORKSPACE + input, tile)?;
            let tiles = layout.apply(tiles);
            let act = m.decode_tiled_bytes(t, h, w, &tiles)?;
            (input, tiles, act)
        }
        VaeOp::Encode => {
            let io = round(4 * (3 * frames * height * width) as u64) + round(4 * (32 * t * h * w) as u64);
            let tiles = m.plan_encode_tiles(frames, height, width, budget, weights + GEMM_WORKSPACE + io, tile)?;
            let tiles = layout.apply(tiles);
            let act = m.encode_tiled_bytes(frames, height, width, &tiles)?;
            (io, tiles, act)
        }
    };
    let dev = fit(vram, weights + GEMM_WORKSPACE + input + act, "bench")?;
    super::kernels_compiled();
    eprintln!("vae {op:?} {frames}x{height}x{width} {precision:?} on {}: {} ({} of activations)", dev.name(), tiles.describe(8), fmt_bytes(act));
    let rate = gemm_tflops(&dev)?;
    let t0 = Instant::now();
    let plan = Plan::new(units, Mode::Resident, 0, 0)?;
    let engine = Engine::new(&dev, units.clone(), plan, HostWeights::pinned(Arc::new(SynthSource { seed: 0 })))?;
    let setup_s = t0.elapsed().as_secs_f64();
    let make = |shape: &[usize], seed: u64| -> Result<Tensor> {
        let x = Tensor::empty(&dev, shape, DType::F32)?;
        ops::fill_uniform(&x, seed, -1.0, 1.0)?;
        Ok(x)
    };
    dev.synchronize()?;
    let base = dev.memory_stats().in_use;
    dev.reset_peak();
    let times = match op {
        VaeOp::Decode => {
            let z = make(&[1, 16, t, h, w], 3)?;
            // Frames stay on the device, as diffusers' `decode(...).sample` does.
            timed(&dev, iters, || m.decode_tiled_with(&engine, &z, &tiles, |_, _, _| Ok(()), None))?
        }
        VaeOp::Encode => {
            let v = make(&[1, 3, frames, height, width], 4)?;
            timed(&dev, iters, || m.encode_tiled(&engine, &v, &tiles, None).map(drop))?
        }
    };
    let stats = dev.memory_stats();
    let best = times.iter().cloned().fold(f64::INFINITY, f64::min);
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    let (tflop, floor) = match op {
        VaeOp::Decode => {
            let f = m.decode_flops(t, h, w) / 1e12;
            (format!("{f:.1}"), format!("{:.3}", f / rate))
        }
        VaeOp::Encode => ("null".into(), "null".into()),
    };
    println!(
        "{{\"bench\":\"vae\",\"impl\":\"wanrt\",\"op\":\"{}\",\"frames\":{frames},\"height\":{height},\"width\":{width},\"precision\":\"{}\",\"tiles\":\"{}\",\"tile_count\":{},\"frame_by_frame\":{},\"s\":{best:.4},\"s_each\":{times:?},\"peak_gib\":{:.3},\"device_peak_gib\":{:.3},\"weights_gib\":{:.3},\"activation_gib\":{:.3},\"decoder_tflop\":{tflop},\"gemm_tflops\":{rate:.1},\"floor_s\":{floor},\"setup_s\":{setup_s:.2},\"device\":\"{}\"}}",
        format!("{op:?}").to_lowercase(),
        format!("{precision:?}").to_lowercase(),
        tiles.describe(8),
        tiles.tiles.len(),
        tiles.stream,
        gib(stats.peak.saturating_sub(base) + weights),
        gib(stats.peak),
        gib(weights),
        gib(act),
        dev.name()
    );
    Ok(())
}
