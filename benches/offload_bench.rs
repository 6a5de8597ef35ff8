//! Offload engine benchmark: does streaming reach the PCIe floor?
//!
//! A toy model of 40 units of 7168x7168 bf16 (98 MiB each, 4.1 GB in all), each a Linear applied to an
//! activation of `rows` rows. Thin activations (64 rows) make a forward transfer-bound; 12288 rows
//! bring compute near the transfer time. For each mode: milliseconds per forward in steady state
//! (8 forwards back to back, timed with events; the K groups prefetched before the start event make
//! it at most K/320 optimistic), against the floor = max(resident forward time,
//! streamed bytes / measured pinned H2D bandwidth), and the host time to queue the forwards (far below
//! the GPU time when nothing waits on the host). One JSON object per line.
//!
//! Run: `gpu-bundle/bin/offload_bench` (built by scripts/gpu-bundle.sh).

use std::sync::Arc;
use std::time::Instant;

use wanrt::runtime::offload::{Engine, Grouping, HostWeights, Mode, ModelUnits, Plan, TensorSpec, UnitSpec, WeightSource};
use wanrt::runtime::ops;
use wanrt::runtime::tensor::f32_to_bytes;
use wanrt::{DType, Device, Result, Tensor};

const UNITS: usize = 40;
const D: usize = 7168;
const FORWARDS: usize = 8;
const WARMUP: usize = 2;
const REPS: usize = 5;

struct Synth;

impl WeightSource for Synth {
    fn read_into(&self, t: &TensorSpec, dst: &mut [u8]) -> Result<()> {
        let mut s = t.name.bytes().fold(0x9E37_79B9_7F4A_7C15u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01B3)) | 1;
        let scale = (3.0 / D as f32).sqrt();
        for chunk in dst.chunks_mut(1 << 16) {
            let v: Vec<f32> = (0..chunk.len() / 2)
                .map(|_| {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    ((s >> 40) as f32 / (1u64 << 23) as f32 - 1.0) * scale
                })
                .collect();
            chunk.copy_from_slice(&f32_to_bytes(&v, t.dtype));
        }
        Ok(())
    }
}

fn units() -> ModelUnits {
    let u = (0..UNITS)
        .map(|i| UnitSpec::new(format!("layers.{i}"), Some(i), vec![TensorSpec::new(format!("layers.{i}.weight"), &[D, D], DType::BF16)]))
        .collect();
    ModelUnits::new(u).expect("valid units")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn h2d_gbps(dev: &Arc<Device>) -> Result<f64> {
    let bytes = 1usize << 30;
    let mut host = dev.pinned().alloc(bytes, false)?;
    host.as_mut_slice()?.iter_mut().step_by(4096).for_each(|b| *b = 1);
    let dst = dev.alloc(bytes as u64, "h2d bench")?;
    dev.synchronize()?;
    let mut times = Vec::new();
    for i in 0..WARMUP + REPS {
        let start = dev.copy().record_timed()?;
        dev.upload_pinned(&dst, 0, &host, 0..bytes, dev.copy())?;
        let end = dev.copy().record_timed()?;
        let ms = end.elapsed_ms(&start)? as f64;
        if i >= WARMUP {
            times.push(ms);
        }
    }
    Ok(bytes as f64 / 1e9 / (median(times) / 1e3))
}

/// (GPU ms per forward, host ms to queue FORWARDS forwards), medians over REPS after WARMUP.
fn time_forwards(e: &Engine, x: &Tensor, acts: &[Tensor; 2]) -> Result<(f64, f64)> {
    let dev = e.device();
    let forward = || -> Result<()> {
        e.forward(|fw| {
            let mut src = x;
            for (i, id) in e.units().ids().enumerate() {
                let g = fw.unit(id)?;
                let dst = &acts[i % 2];
                ops::linear(src, &g.tensors()[0], None, dst)?;
                src = dst;
            }
            Ok(())
        })
    };
    let (mut gpu, mut host) = (Vec::new(), Vec::new());
    for rep in 0..WARMUP + REPS {
        let start = dev.compute().record_timed()?;
        let t0 = Instant::now();
        for _ in 0..FORWARDS {
            forward()?;
        }
        let queued = t0.elapsed().as_secs_f64() * 1e3;
        let end = dev.compute().record_timed()?;
        let ms = end.elapsed_ms(&start)? as f64;
        if rep >= WARMUP {
            gpu.push(ms / FORWARDS as f64);
            host.push(queued);
        }
    }
    Ok((median(gpu), median(host)))
}

fn main() -> Result<()> {
    let dev = match Device::get(0) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("offload_bench: skipped: {e}");
            return Ok(());
        }
    };
    let units = units();
    let source: Arc<dyn WeightSource> = Arc::new(Synth);
    let gbps = h2d_gbps(&dev)?;
    let name = dev.name().to_string();
    println!("{{\"bench\":\"h2d\",\"device\":\"{name}\",\"gbps\":{gbps:.2}}}");
    let half = UNITS / 2;
    let modes = [
        ("resident", Mode::Resident, 0),
        ("block1-streamed", Mode::Block { n: 1, streamed: true }, 2),
        ("block1-streamed", Mode::Block { n: 1, streamed: true }, 3),
        ("block2-streamed", Mode::Block { n: 2, streamed: true }, 2),
        ("hybrid-half-streamed", Mode::Hybrid { prefix: half / 2, suffix: half / 2, group: Grouping::Leaf, streamed: true }, 2),
        ("block1-sync", Mode::Block { n: 1, streamed: false }, 2),
    ];
    for rows in [64usize, 12288] {
        let x = Tensor::zeros(&dev, &[rows, D], DType::BF16)?;
        let acts = [Tensor::empty(&dev, &[rows, D], DType::BF16)?, Tensor::empty(&dev, &[rows, D], DType::BF16)?];
        let mut resident_ms = 0.0;
        for (label, mode, k) in modes {
            let plan = Plan::new(&units, mode, k, 0)?;
            let streamed = plan.streamed_bytes();
            let e = Engine::new(&dev, units.clone(), plan, HostWeights::pinned(source.clone()))?;
            let (ms, queue_ms) = time_forwards(&e, &x, &acts)?;
            drop(e);
            if mode == Mode::Resident {
                resident_ms = ms;
            }
            let transfer_ms = streamed as f64 / 1e9 / gbps * 1e3;
            let floor = resident_ms.max(transfer_ms);
            println!(
                "{{\"bench\":\"offload\",\"device\":\"{name}\",\"rows\":{rows},\"mode\":\"{label}\",\"k\":{k},\"streamed_gb\":{:.3},\"ms_per_forward\":{ms:.3},\"resident_ms\":{resident_ms:.3},\"transfer_floor_ms\":{transfer_ms:.3},\"floor_ms\":{floor:.3},\"ratio_to_floor\":{:.3},\"host_queue_ms_{FORWARDS}_forwards\":{queue_ms:.3},\"gpu_ms_{FORWARDS}_forwards\":{:.3}}}",
                streamed as f64 / 1e9,
                ms / floor,
                ms * FORWARDS as f64
            );
        }
    }
    Ok(())
}
