//! Attention forward TFLOP/s (4·B·H·Nq·Nk·d FLOPs) of `ops::attention::mma` at Wan's shapes: the
//! 1.3B and 14B self-attention at 480p-81f (32,760 tokens), the 14B at 720p-81f (75,600 tokens), and
//! the 14B's text cross-attention (512 keys). One JSON object per line; `benches/compare.py` sets them
//! beside torch SDPA's from `benches/torch_micro.py attention` measured on the same card.
//!
//! `path` is `mma` for the tile the table picks on this device, `mma-{tile}` for each other tile of
//! the head dim that fits, so one run compares them. On compute capability 9.0 the wgmma kernel
//! (`ops::attention::wgmma`) follows: `wgmma` for its default variant, `wgmma-{variant}` for the others.
//!
//! Then UMT5-XXL's attention with its relative-position bias at 512 tokens, one and two prompts, per
//! layer and times 24 layers: the eager GEMM path the encoder takes, and the portable fused kernel.
//! Run: `gpu-bundle/bin/attention_bench`.

#[path = "common/mod.rs"]
mod common;

use std::sync::Arc;

use common::{random_tensor, time_ms};

use wanrt::runtime::gpu::Arch;
use wanrt::runtime::ops::attention::mma::{self, Tile};
use wanrt::runtime::ops::attention::wgmma;
use wanrt::{DType, Device, Result, Tensor};

/// (B, H, Nq, d, Nk).
const SHAPES: [(usize, usize, usize, usize, usize); 4] =
    [(1, 12, 32_760, 128, 32_760), (1, 40, 32_760, 128, 32_760), (1, 40, 75_600, 128, 75_600), (1, 40, 32_760, 128, 512)];

fn bench_shape(dev: &Arc<Device>, (b, h, nq, d, nk): (usize, usize, usize, usize, usize)) -> Result<()> {
    let dt = DType::BF16;
    let q = random_tensor(dev, &[b, nq, h, d], dt, 1.0, 1)?;
    let k = random_tensor(dev, &[b, nk, h, d], dt, 1.0, 2)?;
    let v = random_tensor(dev, &[b, nk, h, d], dt, 1.0, 3)?;
    let out = Tensor::empty(dev, &[b, nq, h, d], dt)?;
    let scale = 1.0 / (d as f32).sqrt();
    let flops = 4.0 * (b * h) as f64 * nq as f64 * nk as f64 * d as f64;
    let chosen = mma::select_tile(dev, d)?;
    let mut runs: Vec<(String, Tile)> = vec![("mma".into(), chosen)];
    for &t in mma::tiles(d) {
        if t != chosen && t.shared_bytes(d) <= dev.max_shared_memory_optin() {
            runs.push((format!("mma-{}", t.name()), t));
        }
    }
    for (path, tile) in runs {
        let ms = time_ms(dev, || mma::attention_mma_with_tile(&q, &k, &v, scale, &out, tile))?;
        println!(
            "{{\"bench\":\"attention\",\"path\":\"{path}\",\"tile\":\"{}\",\"shape\":[{b},{nq},{h},{d}],\"nk\":{nk},\"ms\":{ms:.3},\"tflops\":{:.1}}}",
            tile.name(),
            flops / ms / 1e9
        );
    }
    if dev.arch() == Arch::new(9, 0) && wgmma::wgmma_supported(&q, &k, &v, &out) {
        let default = wgmma::select_variant(nk)?;
        let mut variants = vec![("wgmma".to_string(), default)];
        for &var in wgmma::variants() {
            if var != default && var.shared_bytes() <= dev.max_shared_memory_optin() {
                variants.push((format!("wgmma-{}", var.name()), var));
            }
        }
        for (path, var) in variants {
            let ms = time_ms(dev, || wgmma::attention_wgmma_with_variant(&q, &k, &v, scale, &out, var))?;
            println!(
                "{{\"bench\":\"attention\",\"path\":\"{path}\",\"tile\":\"{}\",\"shape\":[{b},{nq},{h},{d}],\"nk\":{nk},\"ms\":{ms:.3},\"tflops\":{:.1}}}",
                var.name(),
                flops / ms / 1e9
            );
        }
    }
    Ok(())
}

/// UMT5-XXL per layer as the encoder runs it: the score GEMMs (f32 out), the fused bias + mask +
/// softmax (f32), the p·v GEMMs (f32) and the normalization (`ops::attention::eager`), B prompts of 512 tokens; beside it the portable fused kernel
/// with a materialized f32 bias, the alternative the encoder does not take.
fn bench_umt5(dev: &Arc<Device>, b: usize) -> Result<()> {
    use wanrt::runtime::ops::{self, relative_bias::bucket_table};
    let (h, n, d, dt) = (64, 512, 64, DType::BF16);
    let q = random_tensor(dev, &[b, n, h, d], dt, 1.0, 1)?;
    let k = random_tensor(dev, &[b, n, h, d], dt, 1.0, 2)?;
    let v = random_tensor(dev, &[b, n, h, d], dt, 1.0, 3)?;
    let out = Tensor::empty(dev, &[b, n, h, d], dt)?;
    let table = random_tensor(dev, &[32, h], dt, 1.0, 4)?;
    let bucket = Tensor::empty(dev, &[2 * n - 1], DType::F32)?;
    bucket.write_bytes(&wanrt::runtime::tensor::f32_to_bytes(&bucket_table(n, n, 32, 128), DType::F32))?;
    let mask = Tensor::empty(dev, &[b, n], DType::F32)?;
    mask.fill_bytes(0)?;
    let scores = Tensor::empty(dev, &[b, h, n, n], DType::F32)?;
    let probs = Tensor::empty(dev, &[b, h, n, n], DType::F32)?;
    let v32 = Tensor::empty(dev, &[b, n, h, d], DType::F32)?;
    let rowsum = Tensor::empty(dev, &[b, h, n], DType::F32)?;
    let o32 = Tensor::empty(dev, &[b, n, h, d], DType::F32)?;
    let eager_ms = time_ms(dev, || {
        ops::attention_scores(&q, &k, 1.0, &scores)?;
        ops::relative_bias_softmax(&scores, &table, &bucket, &mask, &probs, &rowsum)?;
        ops::cast(&v, &v32)?;
        ops::attention_apply(&probs, &v32, &o32)?;
        ops::attention_normalize(&o32, &rowsum, &out)
    })?;
    let bias = random_tensor(dev, &[b, h, n, n], DType::F32, 1.0, 5)?;
    let portable_ms = time_ms(dev, || ops::attention(&q, &k, &v, Some(&bias), 1.0, &out))?;
    let flops = 4.0 * (b * h * n * n * d) as f64;
    println!(
        "{{\"bench\":\"attention_umt5\",\"shape\":[{b},{n},{h},{d}],\"nk\":{n},\"eager_ms\":{eager_ms:.4},\"eager_tflops\":{:.1},\"portable_bias_ms\":{portable_ms:.4},\"eager_24_layers_ms\":{:.3},\"portable_24_layers_ms\":{:.3}}}",
        flops / eager_ms / 1e9,
        24.0 * eager_ms,
        24.0 * portable_ms
    );
    Ok(())
}

fn main() {
    let dev = match Device::get(0) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("attention_bench needs a GPU: {e}");
            std::process::exit(2);
        }
    };
    eprintln!("device: {} ({}), {} SMs", dev.name(), dev.arch(), dev.sm_count());
    let mut failed = false;
    for shape in SHAPES {
        if let Err(e) = bench_shape(&dev, shape) {
            eprintln!("attention {shape:?} failed: {e}");
            failed = true;
        }
    }
    for b in [1, 2] {
        if let Err(e) = bench_umt5(&dev, b) {
            eprintln!("attention umt5 B={b} failed: {e}");
            failed = true;
        }
    }
    if failed {
        std::process::exit(1);
    }
}
