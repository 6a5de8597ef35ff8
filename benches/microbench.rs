//! Runtime microbenchmarks on the GPU: GEMM TFLOP/s at Wan's shapes, pinned H2D GB/s and the VAE's
//! channel norm (`l2_norm`, packed against scalar kernel) in GB/s (attention:
//! benches/attention_bench.rs). Prints one JSON object per line; `benches/compare.py` sets them beside torch's numbers
//! from `benches/torch_micro.py` measured in the same run on the same card.
//!
//! Run: `gpu-bundle/bin/microbench` (built by scripts/gpu-bundle.sh).

#[path = "common/mod.rs"]
mod common;

use std::sync::Arc;

use common::{random_tensor, time_ms, REPS, WARMUP};

use wanrt::runtime::ops;
use wanrt::{DType, Device, Result, Tensor};

fn gemm_benches(dev: &Arc<Device>) -> Result<()> {
    let m = 32_760usize;
    for &(k, n) in &[(1536, 1536), (1536, 8960), (8960, 1536), (5120, 5120), (5120, 13824), (13824, 5120)] {
        let x = random_tensor(dev, &[m, k], DType::BF16, 1.0, 1)?;
        let w = random_tensor(dev, &[n, k], DType::BF16, 1.0 / (k as f32).sqrt(), 2)?;
        let b = random_tensor(dev, &[n], DType::BF16, 0.1, 3)?;
        let out = Tensor::empty(dev, &[m, n], DType::BF16)?;
        let flops = 2.0 * m as f64 * k as f64 * n as f64;
        let plain = time_ms(dev, || ops::linear(&x, &w, None, &out))?;
        let bias = time_ms(dev, || ops::linear(&x, &w, Some(&b), &out))?;
        println!(
            "{{\"bench\":\"gemm\",\"m\":{m},\"k\":{k},\"n\":{n},\"ms\":{plain:.4},\"tflops\":{:.1},\"bias_ms\":{bias:.4},\"bias_tflops\":{:.1}}}",
            flops / plain / 1e9,
            flops / bias / 1e9
        );
    }
    Ok(())
}

fn h2d_bench(dev: &Arc<Device>) -> Result<()> {
    let bytes = 1usize << 30;
    let mut host = dev.pinned().alloc(bytes, false)?;
    host.as_mut_slice()?.iter_mut().step_by(4096).for_each(|b| *b = 1);
    let dst = dev.alloc(bytes as u64, "h2d bench")?;
    dev.synchronize()?;
    let mut times = Vec::new();
    for i in 0..(WARMUP + REPS) {
        let start = dev.copy().record_timed()?;
        dev.upload_pinned(&dst, 0, &host, 0..bytes, dev.copy())?;
        let end = dev.copy().record_timed()?;
        let ms = end.elapsed_ms(&start)? as f64;
        if i >= WARMUP {
            times.push(ms);
        }
    }
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let ms = times[REPS / 2];
    println!("{{\"bench\":\"h2d\",\"bytes\":{bytes},\"ms\":{ms:.3},\"gbps\":{:.2}}}", bytes as f64 / ms / 1e6);
    Ok(())
}

/// `ops::l2_norm` + SiLU (the Wan VAE decoder's WanRMS_norm → SiLU pairs), bf16 [rows, C] with rows =
/// 4 frames × H × W at the 480p decoder's resolution for each width, bf16 gamma.
/// The packed kernel on aligned tensors; the scalar one on views misaligned by one element.
/// GB/s counts one read and one write of x.
fn l2_norm_benches(dev: &Arc<Device>) -> Result<()> {
    for &(c, rows) in &[(96usize, 4 * 480 * 832usize), (192, 4 * 240 * 416), (384, 4 * 120 * 208), (384, 4 * 60 * 104)] {
        let n = rows * c;
        let (xb, ob) = (random_tensor(dev, &[n + 1], DType::BF16, 2.0, 4)?, Tensor::empty(dev, &[n + 1], DType::BF16)?);
        let gamma = random_tensor(dev, &[c], DType::BF16, 1.0, 5)?;
        let view = |t: &Tensor, off: usize| t.narrow(0, off, n)?.reshape(&[rows, c]);
        let (xp, op, xs, os) = (view(&xb, 0)?, view(&ob, 0)?, view(&xb, 1)?, view(&ob, 1)?);
        let packed = time_ms(dev, || ops::l2_norm(&xp, &gamma, None, true, &op))?;
        let scalar = time_ms(dev, || ops::l2_norm(&xs, &gamma, None, true, &os))?;
        let gbps = |ms: f64| (2 * 2 * n) as f64 / ms / 1e6;
        println!(
            "{{\"bench\":\"l2_norm\",\"rows\":{rows},\"c\":{c},\"packed_ms\":{packed:.4},\"packed_gbps\":{:.0},\"scalar_ms\":{scalar:.4},\"scalar_gbps\":{:.0}}}",
            gbps(packed),
            gbps(scalar)
        );
    }
    Ok(())
}

/// `ops::softmax` from f32 scores to bf16 probabilities (the Wan VAE mid-block attention: one frame's
/// tokens at latent resolution, 60×104 at 480p and 90×160 at 720p, one head). GB/s counts one f32
/// read and one bf16 write. Which kernel runs follows `WANRT_UNVERIFIED` (the register-resident one
/// with it): run the bench with and without it to compare them.
fn softmax_benches(dev: &Arc<Device>) -> Result<()> {
    let unverified = wanrt::runtime::settings::settings().unverified;
    for &l in &[60 * 104usize, 90 * 160] {
        let x = random_tensor(dev, &[l, l], DType::F32, 4.0, 6)?;
        let out = Tensor::empty(dev, &[l, l], DType::BF16)?;
        let ms = time_ms(dev, || ops::softmax(&x, &out))?;
        println!(
            "{{\"bench\":\"softmax\",\"rows\":{l},\"l\":{l},\"unverified\":{unverified},\"ms\":{ms:.4},\"gbps\":{:.0}}}",
            (6 * l * l) as f64 / ms / 1e6
        );
    }
    Ok(())
}

fn main() {
    let dev = match Device::get(0) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("microbench needs a GPU: {e}");
            std::process::exit(2);
        }
    };
    eprintln!("device: {} ({}), {} SMs", dev.name(), dev.arch(), dev.sm_count());
    let which: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let want = |name: &str| which.is_empty() || which.iter().any(|w| w == name);
    let mut failed = false;
    let mut run = |name: &str, f: &dyn Fn(&Arc<Device>) -> Result<()>| {
        if want(name) {
            if let Err(e) = f(&dev) {
                eprintln!("{name} failed: {e}");
                failed = true;
            }
        }
    };
    run("gemm", &gemm_benches);
    run("h2d", &h2d_bench);
    run("l2_norm", &l2_norm_benches);
    run("softmax", &softmax_benches);
    if failed {
        std::process::exit(1);
    }
}
