//! Shared by the benchmark binaries: event timing and random device tensors.
#![allow(dead_code)]

use std::sync::Arc;

use wanrt::runtime::ops;
use wanrt::{DType, Device, Result, Tensor};

pub const WARMUP: usize = 3;
pub const REPS: usize = 10;

/// Median milliseconds of `f` over REPS runs after WARMUP, timed with events on the compute stream.
pub fn time_ms(dev: &Arc<Device>, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    for _ in 0..WARMUP {
        f()?;
    }
    let mut times = Vec::with_capacity(REPS);
    for _ in 0..REPS {
        let start = dev.compute().record_timed()?;
        f()?;
        let end = dev.compute().record_timed()?;
        times.push(end.elapsed_ms(&start)? as f64);
    }
    times.sort_by(|a, b| a.total_cmp(b));
    Ok(times[REPS / 2])
}

/// Values uniform in [-scale, scale), generated on the device (deterministic in `seed`).
pub fn random_tensor(dev: &Arc<Device>, shape: &[usize], dtype: DType, scale: f32, seed: u64) -> Result<Tensor> {
    let t = Tensor::empty(dev, shape, dtype)?;
    ops::fill_uniform(&t, seed, -scale, scale)?;
    Ok(t)
}
