//! The tensor-core attention kernel (`ops::attention::mma`) against a CPU f64 reference, for every
//! instantiated tile, bf16 and f16, head dims 64/80/128, ragged and cross-attention lengths.
//!
//! Metric (as for GEMM): max |out − ref| ≤ 2 · max |naive − ref| + 1e-6, where ref is attention in f64
//! on the same (quantized) inputs and "naive" is a CPU emulation of the plain same-dtype computation
//! a framework would run: S = q·kᵀ accumulated in f32 and scaled in f32, softmax in f32, P rounded to
//! the dtype, P·V accumulated in f32, the output rounded to the dtype. The bound says the fused kernel
//! is as accurate as the unfused one up to a factor 2 (its P is rounded before normalization, its
//! exponentials are the SFU's); the 1e-6 only matters where the naive result is exact (one key). Long
//! query lengths check a sample of rows (both ends plus random ones); every output must be finite
//! (outputs are NaN-poisoned before each run).

mod common;
#[path = "common/attention.rs"]
mod attention_ref;

use std::sync::Arc;

use rand::rngs::StdRng;
use wanrt::runtime::ops::attention::mma::{self, Tile};
use attention_ref::{checked_rows, gather, inputs, max_err, reference, Case};
use wanrt::{DType, Device, Tensor};

/// Tiles of head dim `d` this device can run.
fn runnable_tiles(dev: &Device, d: usize) -> Vec<Tile> {
    mma::tiles(d).iter().copied().filter(|t| t.shared_bytes(d) <= dev.max_shared_memory_optin()).collect()
}

/// Runs `c` through every runnable tile (and the default entry point) and checks each against the
/// bound. Panics with the case, tile and errors on failure.
fn check_case(dev: &Arc<Device>, rng: &mut StdRng, c: Case, dtype: DType) {
    let scale = 1.0 / (c.d as f32).sqrt();
    let x = inputs(&c, dtype, rng);
    let q = Tensor::from_f32(dev, &[c.b, c.nq, c.h, c.d], dtype, &x.q).unwrap();
    let k = Tensor::from_f32(dev, &[c.b, c.nk, c.h, c.d], dtype, &x.k).unwrap();
    let v = Tensor::from_f32(dev, &[c.b, c.nk, c.h, c.d], dtype, &x.v).unwrap();
    let out = Tensor::empty(dev, &[c.b, c.nq, c.h, c.d], dtype).unwrap();
    let rows = checked_rows(c.nq, rng);
    let (want, naive) = reference(&c, &x, scale, dtype, &rows);
    let naive_err = max_err(&naive, &want);
    let bound = 2.0 * naive_err + 1e-6;
    let mut runs: Vec<(String, Option<Tile>)> = vec![("default".into(), None)];
    runs.extend(runnable_tiles(dev, c.d).into_iter().map(|t| (t.name(), Some(t))));
    for (name, tile) in runs {
        out.fill_nan().unwrap();
        match tile {
            Some(t) => mma::attention_mma_with_tile(&q, &k, &v, scale, &out, t).unwrap(),
            None => mma::attention_mma(&q, &k, &v, scale, &out).unwrap(),
        }
        let got = out.to_f32_vec().unwrap();
        if let Some(i) = got.iter().position(|g| !g.is_finite()) {
            panic!("{c:?} {dtype} tile {name}: output element {i} is {} (not written or NaN)", got[i]);
        }
        let err = max_err(&gather(&c, &got, &rows), &want);
        eprintln!("{c:?} {dtype} {name}: max err {err:.3e}, naive {naive_err:.3e}");
        assert!(err <= bound, "{c:?} {dtype} tile {name}: max |out - ref| = {err:.3e} > 2 x naive {naive_err:.3e} + 1e-6");
    }
}

/// Ragged and tile-boundary lengths (square and not), B = 2, H = 3, plus a large-logit case.
fn shape_sweep(dtype: DType, d: usize, test: &str) {
    let Some(dev) = common::gpu(test) else { return };
    let mut rng = common::rng(test);
    let case = |nq, nk| Case { b: 2, h: 3, nq, nk, d, q_std: 1.0 };
    for n in [1, 15, 16, 17, 63, 64, 65, 127, 128, 129] {
        check_case(&dev, &mut rng, case(n, n), dtype);
    }
    for (nq, nk) in [(300, 77), (300, 257), (129, 512), (17, 1000), (1000, 17), (1000, 1000), (4099, 4099)] {
        check_case(&dev, &mut rng, case(nq, nk), dtype);
    }
    check_case(&dev, &mut rng, Case { q_std: 8.0, ..case(257, 300) }, dtype);
}

#[test]
fn bf16_d64() {
    shape_sweep(DType::BF16, 64, "bf16_d64");
}
#[test]
fn bf16_d80() {
    shape_sweep(DType::BF16, 80, "bf16_d80");
}
#[test]
fn bf16_d128() {
    shape_sweep(DType::BF16, 128, "bf16_d128");
}
#[test]
fn f16_d64() {
    shape_sweep(DType::F16, 64, "f16_d64");
}
#[test]
fn f16_d80() {
    shape_sweep(DType::F16, 80, "f16_d80");
}
#[test]
fn f16_d128() {
    shape_sweep(DType::F16, 128, "f16_d128");
}

/// Wan's cross-attention: 32,760 video queries over 512 text keys (T2V) or 257 image keys (I2V).
#[test]
fn cross_attention_shapes() {
    let Some(dev) = common::gpu("cross_attention_shapes") else { return };
    let mut rng = common::rng("cross_attention_shapes");
    for dtype in [DType::BF16, DType::F16] {
        for nk in [512, 257] {
            check_case(&dev, &mut rng, Case { b: 1, h: 2, nq: 32_760, nk, d: 128, q_std: 1.0 }, dtype);
        }
    }
}

/// q, k, v as views into one (B, N, H, 3·d) buffer and out as a view into a (B, N, H, 2·d) buffer:
/// token and head strides differ from the contiguous ones and the kernel reads them in place.
#[test]
fn strided_views() {
    let Some(dev) = common::gpu("strided_views") else { return };
    let mut rng = common::rng("strided_views");
    for (dtype, d) in [(DType::BF16, 128), (DType::F16, 80), (DType::BF16, 64)] {
        let c = Case { b: 2, h: 3, nq: 200, nk: 200, d, q_std: 1.0 };
        let x = inputs(&c, dtype, &mut rng);
        let n = c.b * c.nq * c.h;
        let mut fused = vec![0f32; n * 3 * d];
        for r in 0..n {
            for (part, src) in [&x.q, &x.k, &x.v].into_iter().enumerate() {
                fused[r * 3 * d + part * d..][..d].copy_from_slice(&src[r * d..][..d]);
            }
        }
        let buf = Tensor::from_f32(&dev, &[c.b, c.nq, c.h, 3 * d], dtype, &fused).unwrap();
        let (q, k, v) = (buf.narrow(3, 0, d).unwrap(), buf.narrow(3, d, d).unwrap(), buf.narrow(3, 2 * d, d).unwrap());
        let out_buf = Tensor::empty(&dev, &[c.b, c.nq, c.h, 2 * d], dtype).unwrap();
        out_buf.fill_nan().unwrap();
        let out = out_buf.narrow(3, d, d).unwrap();
        let scale = 1.0 / (d as f32).sqrt();
        mma::attention_mma(&q, &k, &v, scale, &out).unwrap();
        let all = out_buf.to_f32_vec().unwrap();
        let got: Vec<f32> = (0..n).flat_map(|r| all[r * 2 * d + d..][..d].to_vec()).collect();
        assert!(all.chunks(2 * d).all(|row| row[..d].iter().all(|x| x.is_nan())), "{dtype} d{d}: wrote outside the out view");
        let rows: Vec<usize> = (0..c.nq).collect();
        let (want, naive) = reference(&c, &x, scale, dtype, &rows);
        let (err, naive_err) = (max_err(&gather(&c, &got, &rows), &want), max_err(&naive, &want));
        eprintln!("strided {dtype} d{d}: max err {err:.3e}, naive {naive_err:.3e}");
        assert!(err <= 2.0 * naive_err + 1e-6, "strided {dtype} d{d}: {err:.3e} > 2 x naive {naive_err:.3e}");
    }
}

#[test]
fn bad_inputs_are_errors() {
    let Some(dev) = common::gpu("bad_inputs_are_errors") else { return };
    // Zero-size tensors stay unfilled (there is nothing to memset).
    let t = |shape: &[usize], dtype| {
        if shape.contains(&0) { Tensor::empty(&dev, shape, dtype) } else { Tensor::zeros(&dev, shape, dtype) }.unwrap()
    };
    let bf = DType::BF16;
    let (q, k, v, out) = (t(&[1, 8, 2, 128], bf), t(&[1, 16, 2, 128], bf), t(&[1, 16, 2, 128], bf), t(&[1, 8, 2, 128], bf));
    let f = mma::attention_mma;
    assert!(f(&q, &k, &v, 0.1, &out).is_ok());
    assert!(mma::mma_supported(&q, &k, &v, &out));
    // Head dim without a kernel.
    let (q96, k96, o96) = (t(&[1, 8, 2, 96], bf), t(&[1, 16, 2, 96], bf), t(&[1, 8, 2, 96], bf));
    let e = f(&q96, &k96, &k96, 0.1, &o96).unwrap_err().to_string();
    assert!(e.contains("head_dim"), "{e}");
    assert!(!mma::mma_supported(&q96, &k96, &k96, &o96));
    // Dtype mismatch and unsupported dtype.
    let kf16 = t(&[1, 16, 2, 128], DType::F16);
    let e = f(&q, &kf16, &v, 0.1, &out).unwrap_err().to_string();
    assert!(e.contains("dtype") && e.contains("k"), "{e}");
    let (q32, k32, o32) = (t(&[1, 8, 2, 128], DType::F32), t(&[1, 16, 2, 128], DType::F32), t(&[1, 8, 2, 128], DType::F32));
    assert!(f(&q32, &k32, &k32, 0.1, &o32).is_err());
    assert!(!mma::mma_supported(&q32, &k32, &k32, &o32));
    // Shape mismatches: heads of k, length of v, shape of out, rank.
    assert!(f(&q, &t(&[1, 16, 3, 128], bf), &v, 0.1, &out).is_err());
    assert!(f(&q, &k, &t(&[1, 15, 2, 128], bf), 0.1, &out).is_err());
    assert!(f(&q, &k, &v, 0.1, &t(&[1, 9, 2, 128], bf)).is_err());
    assert!(f(&t(&[8, 2, 128], bf), &k, &v, 0.1, &out).is_err());
    // No keys, bad scale.
    let k0 = t(&[1, 0, 2, 128], bf);
    assert!(f(&q, &k0, &k0, 0.1, &out).is_err());
    assert!(f(&q, &k, &v, 0.0, &out).is_err());
    assert!(f(&q, &k, &v, f32::NAN, &out).is_err());
    // Misaligned view (starts 2 elements into a row) and non-unit stride over head_dim.
    let wide = t(&[1, 8, 2, 136], bf);
    let shifted = wide.narrow(3, 2, 128).unwrap();
    let e = f(&shifted, &k, &v, 0.1, &out).unwrap_err().to_string();
    assert!(e.contains("aligned"), "{e}");
    assert!(!mma::mma_supported(&shifted, &k, &v, &out));
    // A tile not instantiated for the head dim.
    let odd = Tile { block_m: 96, block_n: 48, warps: 2 };
    assert!(mma::attention_mma_with_tile(&q, &k, &v, 0.1, &out, odd).is_err());
    // Nothing to do is fine.
    let (qe, oe) = (t(&[1, 0, 2, 128], bf), t(&[1, 0, 2, 128], bf));
    assert!(f(&qe, &k, &v, 0.1, &oe).is_ok());
}

/// Every head dim has a tile that fits the smallest opt-in shared memory of the supported parts
/// (99 KiB on sm_86/sm_89). CPU only.
#[test]
fn tile_table_fits_every_arch() {
    for d in mma::HEAD_DIMS {
        let tiles = mma::tiles(d);
        assert!(!tiles.is_empty(), "head dim {d} has no tile");
        assert!(tiles.iter().any(|t| t.shared_bytes(d) <= 101_376), "head dim {d}: no tile fits 99 KiB");
        for t in tiles {
            assert_eq!(t.block_m % (16 * t.warps), 0, "{t:?}: block_m must be a multiple of 16 per warp");
            assert_eq!(t.block_n % 16, 0, "{t:?}");
        }
    }
    assert!(mma::tiles(96).is_empty());
}

/// The table's choice per part (opt-in shared memory per CTA): two CTAs per SM where they fit. CPU only.
#[test]
fn tile_choice_per_arch() {
    let name = |d, optin| mma::choose_tile(d, optin).map(|t| t.name());
    let (h100, a100, ada) = (232_448, 166_912, 101_376);
    assert_eq!(name(128, h100).as_deref(), Some("m128n64w4"));
    assert_eq!(name(128, a100).as_deref(), Some("m128n32w4"));
    assert_eq!(name(128, ada).as_deref(), Some("m128n32w4"));
    for optin in [h100, a100, ada] {
        assert_eq!(name(80, optin).as_deref(), Some("m128n64w4"));
        assert!(name(64, optin).is_some());
        assert!(name(96, optin).is_none());
    }
    assert!(name(128, 40_000).is_none());
}
