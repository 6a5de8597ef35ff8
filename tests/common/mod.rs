//! Shared helpers for integration tests: GPU discovery with skip/require semantics, seeded random
//! data, f64 reference math, and dtype-derived tolerances.
#![allow(dead_code)]

use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use wanrt::runtime::gpu::Device;
use wanrt::DType;

/// The first GPU, or `None` with a printed reason. With `WANRT_REQUIRE_GPU=1` a missing GPU fails.
pub fn gpu(test: &str) -> Option<Arc<Device>> {
    match Device::get(0) {
        Ok(d) => Some(d),
        Err(e) => {
            if std::env::var("WANRT_REQUIRE_GPU").is_ok_and(|v| v == "1") {
                panic!("{test}: WANRT_REQUIRE_GPU=1 but no GPU: {e}");
            }
            // Written to the raw stderr handle: libtest captures eprintln! of passing tests, and a
            // skip must be visible. Once per test binary, naming the first skipped test.
            static TOLD: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
            if !TOLD.swap(true, std::sync::atomic::Ordering::Relaxed) {
                use std::io::Write;
                let _ = writeln!(std::io::stderr(), "skipping GPU tests of this binary (first: {test}): {e}");
            }
            None
        }
    }
}

/// A fresh seed per run (printed, so a failure can be replayed with `WANRT_TEST_SEED`).
pub fn rng(test: &str) -> StdRng {
    let seed = std::env::var("WANRT_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random::<u64>);
    eprintln!("{test}: seed {seed}");
    StdRng::seed_from_u64(seed)
}

pub fn randn(rng: &mut StdRng, n: usize, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|_| {
            // Box-Muller: rand 0.9 without rand_distr.
            let u1: f64 = rng.random::<f64>().max(1e-300);
            let u2: f64 = rng.random::<f64>();
            ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32 * scale
        })
        .collect()
}

/// Rounds values through `dtype` (what the device sees after upload).
pub fn quantize(v: &[f32], dtype: DType) -> Vec<f32> {
    wanrt::runtime::tensor::bytes_to_f32(&wanrt::runtime::tensor::f32_to_bytes(v, dtype), dtype)
}

/// Unit roundoff of a dtype (half an ulp at 1.0).
pub fn eps(dtype: DType) -> f64 {
    match dtype {
        DType::F32 => f32::EPSILON as f64 / 2.0,
        DType::BF16 => 1.0 / 256.0,
        DType::F16 => 1.0 / 2048.0,
    }
}

/// Checks `|got - want| <= atol + rtol·|want|` elementwise, NaN never passes. Reports the worst index.
pub fn assert_close(what: &str, got: &[f32], want: &[f64], atol: f64, rtol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut worst = (0usize, 0f64);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g as f64 - w).abs();
        let tol = atol + rtol * w.abs();
        let excess = if err.is_nan() || g.is_nan() { f64::INFINITY } else { err / tol };
        if excess > worst.1 {
            worst = (i, excess);
        }
    }
    let (i, x) = worst;
    assert!(
        x <= 1.0,
        "{what}: element {i}: got {} want {} (|err| = {:.3e}, tolerance {:.3e}; {x:.2}x over)",
        got[i],
        want[i],
        (got[i] as f64 - want[i]).abs(),
        atol + rtol * want[i].abs()
    );
}

/// The repository root: `WANRT_REPO_ROOT` when set (test binaries carried to the GPU machine run
/// from another checkout path), else the path the tests were built in.
pub fn repo_root() -> std::path::PathBuf {
    std::env::var_os("WANRT_REPO_ROOT").map(Into::into).unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into())
}

/// `tests/fixtures/...` under the repository root.
pub fn fixture(rel: &str) -> std::path::PathBuf {
    repo_root().join("tests").join("fixtures").join(rel)
}
