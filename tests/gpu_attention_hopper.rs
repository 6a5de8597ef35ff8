//! The Hopper attention kernel (`ops::attention::wgmma`: TMA, wgmma, warp specialization) against a CPU
//! f64 reference, for every variant, bf16 and f16, ragged and cross-attention lengths, strided views,
//! and views whose memory beyond the true lengths holds NaN. Two probes run each product of the kernel
//! (S = Q·Kᵀ, O = P·V) alone on one tile, so a failure can be pinned on a layout. GPU tests need compute
//! capability 9.0 and say why they skip elsewhere (with `WANRT_REQUIRE_GPU=1` they fail instead); the
//! layout, table and compile checks run on the CPU.
//!
//! Metric (as tests/gpu_attention_fast.rs): max |out − ref| ≤ 2 · max |naive − ref| + 1e-6, where ref is
//! attention in f64 on the same (quantized) inputs and "naive" a CPU emulation of the plain same-dtype
//! computation a framework would run: S = q·kᵀ accumulated in f32 and scaled in f32, softmax in f32, P
//! rounded to the dtype, P·V accumulated in f32, the output rounded to the dtype. Long query lengths
//! check a sample of rows (both ends plus random ones); every output must be finite (outputs are
//! NaN-poisoned before each run).

mod common;
#[path = "common/attention.rs"]
mod attention_ref;

use std::sync::Arc;

use rand::rngs::StdRng;
use wanrt::runtime::gpu::Arch;
use wanrt::runtime::ops::attention::wgmma::{self, MapLayout, Variant};
use wanrt::runtime::registry;
use attention_ref::{checked_rows, gather, inputs, max_err, reference, Case, Inputs};
use wanrt::{DType, Device, Tensor};

const D: usize = 128;

/// The GPU when it is a Hopper part (compute capability 9.0), else `None` with the reason printed; with
/// `WANRT_REQUIRE_GPU=1` another GPU is a failure, as a missing one is (`common::gpu`).
fn hopper(test: &str) -> Option<Arc<Device>> {
    let dev = common::gpu(test)?;
    if dev.arch() != Arch::new(9, 0) {
        if std::env::var("WANRT_REQUIRE_GPU").is_ok_and(|v| v == "1") {
            panic!("{test}: WANRT_REQUIRE_GPU=1 but {} is {}, not compute capability 9.0", dev.name(), dev.arch());
        }
        eprintln!(
            "skipping {test}: {} is {}, the wgmma kernel needs compute capability 9.0 (sm_90a)",
            dev.name(),
            dev.arch()
        );
        return None;
    }
    Some(dev)
}

/// Variants this device can run (all of them on an H100/H200).
fn runnable(dev: &Device) -> Vec<Variant> {
    wgmma::variants().iter().copied().filter(|v| v.shared_bytes() <= dev.max_shared_memory_optin()).collect()
}

/// Runs `c` through the default entry point and every runnable variant; panics with the case, variant
/// and errors on failure.
fn check_case(dev: &Arc<Device>, rng: &mut StdRng, c: Case, dtype: DType) {
    let scale = 1.0 / (D as f32).sqrt();
    let x = inputs(&c, dtype, rng);
    let q = Tensor::from_f32(dev, &[c.b, c.nq, c.h, D], dtype, &x.q).unwrap();
    let k = Tensor::from_f32(dev, &[c.b, c.nk, c.h, D], dtype, &x.k).unwrap();
    let v = Tensor::from_f32(dev, &[c.b, c.nk, c.h, D], dtype, &x.v).unwrap();
    let out = Tensor::empty(dev, &[c.b, c.nq, c.h, D], dtype).unwrap();
    let rows = checked_rows(c.nq, rng);
    let (want, naive) = reference(&c, &x, scale, dtype, &rows);
    let naive_err = max_err(&naive, &want);
    let bound = 2.0 * naive_err + 1e-6;
    let mut runs: Vec<(String, Option<Variant>)> = vec![("default".into(), None)];
    runs.extend(runnable(dev).into_iter().map(|v| (v.name(), Some(v))));
    for (name, variant) in runs {
        out.fill_nan().unwrap();
        match variant {
            Some(var) => wgmma::attention_wgmma_with_variant(&q, &k, &v, scale, &out, var).unwrap(),
            None => wgmma::attention_wgmma(&q, &k, &v, scale, &out).unwrap(),
        }
        let got = out.to_f32_vec().unwrap();
        if let Some(i) = got.iter().position(|g| !g.is_finite()) {
            panic!("{c:?} {dtype} variant {name}: output element {i} is {} (not written or NaN)", got[i]);
        }
        let err = max_err(&gather(&c, &got, &rows), &want);
        eprintln!("{c:?} {dtype} {name}: max err {err:.3e}, naive {naive_err:.3e}");
        assert!(
            err <= bound,
            "{c:?} {dtype} variant {name}: max |out - ref| = {err:.3e} > 2 x naive {naive_err:.3e} + 1e-6"
        );
    }
}

/// Ragged and tile-boundary lengths (key tiles of 128 and 176, one to many tiles, ring slots reused),
/// B = 2, H = 3, plus a large-logit case.
fn shape_sweep(dtype: DType, test: &str) {
    let Some(dev) = hopper(test) else { return };
    let mut rng = common::rng(test);
    let case = |nq, nk| Case { b: 2, h: 3, nq, nk, d: D, q_std: 1.0 };
    for n in [1, 15, 16, 17, 63, 64, 65, 127, 128, 129] {
        check_case(&dev, &mut rng, case(n, n), dtype);
    }
    for (nq, nk) in [
        (300, 77),
        (65, 176),
        (65, 177),
        (300, 256),
        (300, 257),
        (129, 385),
        (64, 353),
        (129, 512),
        (17, 1000),
        (1000, 17),
        (1000, 1000),
        (4099, 4099),
    ] {
        check_case(&dev, &mut rng, case(nq, nk), dtype);
    }
    check_case(&dev, &mut rng, Case { q_std: 8.0, ..case(257, 300) }, dtype);
}

#[test]
fn bf16_shapes() {
    shape_sweep(DType::BF16, "bf16_shapes");
}

#[test]
fn f16_shapes() {
    shape_sweep(DType::F16, "f16_shapes");
}

/// Wan's cross-attention: 32,760 video queries over 512 text keys (T2V) or 257 image keys (I2V).
#[test]
fn cross_attention_shapes() {
    let Some(dev) = hopper("cross_attention_shapes") else { return };
    let mut rng = common::rng("cross_attention_shapes");
    for dtype in [DType::BF16, DType::F16] {
        for nk in [512, 257] {
            check_case(&dev, &mut rng, Case { b: 1, h: 2, nq: 32_760, nk, d: D, q_std: 1.0 }, dtype);
        }
    }
}

/// Checks a (b, nq, h, D) output tensor read back contiguous against the reference on all rows.
fn check_all_rows(c: &Case, x: &Inputs, dtype: DType, got: &[f32], what: &str) {
    assert!(got.iter().all(|g| g.is_finite()), "{what}: non-finite output");
    let scale = 1.0 / (D as f32).sqrt();
    let rows: Vec<usize> = (0..c.nq).collect();
    let (want, naive) = reference(c, x, scale, dtype, &rows);
    let (err, naive_err) = (max_err(&gather(c, got, &rows), &want), max_err(&naive, &want));
    eprintln!("{what}: max err {err:.3e}, naive {naive_err:.3e}");
    assert!(err <= 2.0 * naive_err + 1e-6, "{what}: {err:.3e} > 2 x naive {naive_err:.3e}");
}

/// q, k, v as views into one (B, N, H, 3·128) buffer and out as a view into a (B, N, H, 2·128)
/// buffer: token and head strides differ from the contiguous ones, the tensor maps read them in place,
/// and nothing outside the out view is written.
#[test]
fn strided_views() {
    let Some(dev) = hopper("strided_views") else { return };
    let mut rng = common::rng("strided_views");
    for dtype in [DType::BF16, DType::F16] {
        let c = Case { b: 2, h: 3, nq: 200, nk: 200, d: D, q_std: 1.0 };
        let x = inputs(&c, dtype, &mut rng);
        let n = c.b * c.nq * c.h;
        let mut fused = vec![0f32; n * 3 * D];
        for r in 0..n {
            for (part, src) in [&x.q, &x.k, &x.v].into_iter().enumerate() {
                fused[r * 3 * D + part * D..][..D].copy_from_slice(&src[r * D..][..D]);
            }
        }
        let buf = Tensor::from_f32(&dev, &[c.b, c.nq, c.h, 3 * D], dtype, &fused).unwrap();
        let (q, k, v) = (buf.narrow(3, 0, D).unwrap(), buf.narrow(3, D, D).unwrap(), buf.narrow(3, 2 * D, D).unwrap());
        let out_buf = Tensor::empty(&dev, &[c.b, c.nq, c.h, 2 * D], dtype).unwrap();
        for variant in runnable(&dev) {
            out_buf.fill_nan().unwrap();
            let out = out_buf.narrow(3, D, D).unwrap();
            wgmma::attention_wgmma_with_variant(&q, &k, &v, 1.0 / (D as f32).sqrt(), &out, variant).unwrap();
            let all = out_buf.to_f32_vec().unwrap();
            assert!(
                all.chunks(2 * D).all(|row| row[..D].iter().all(|x| x.is_nan())),
                "{dtype} {}: wrote outside the out view",
                variant.name()
            );
            let got: Vec<f32> = (0..n).flat_map(|r| all[r * 2 * D + D..][..D].to_vec()).collect();
            check_all_rows(&c, &x, dtype, &got, &format!("strided {dtype} {}", variant.name()));
        }
    }
}

/// q, k and v as token ranges of longer buffers whose other tokens are NaN: the tensor maps must carry
/// the true lengths (the copy engine then reads zeros past them) and masked keys must contribute
/// exactly nothing. Lengths are ragged for both tile sizes; the views start 8 tokens in.
#[test]
fn nan_outside_views() {
    let Some(dev) = hopper("nan_outside_views") else { return };
    let mut rng = common::rng("nan_outside_views");
    const PAD: usize = 8;
    let embed = |src: &[f32], b: usize, n: usize, h: usize, total: usize| -> Vec<f32> {
        let mut all = vec![f32::NAN; b * total * h * D];
        for bi in 0..b {
            for t in 0..n {
                let (dst, s) = (((bi * total + PAD + t) * h) * D, ((bi * n + t) * h) * D);
                all[dst..dst + h * D].copy_from_slice(&src[s..s + h * D]);
            }
        }
        all
    };
    for dtype in [DType::BF16, DType::F16] {
        for (nq, nk) in [(100, 77), (130, 300), (65, 177)] {
            let c = Case { b: 2, h: 3, nq, nk, d: D, q_std: 1.0 };
            let x = inputs(&c, dtype, &mut rng);
            let (tq, tk) = (nq + PAD + 40, nk + PAD + 40);
            let qb = Tensor::from_f32(&dev, &[c.b, tq, c.h, D], dtype, &embed(&x.q, c.b, nq, c.h, tq)).unwrap();
            let kb = Tensor::from_f32(&dev, &[c.b, tk, c.h, D], dtype, &embed(&x.k, c.b, nk, c.h, tk)).unwrap();
            let vb = Tensor::from_f32(&dev, &[c.b, tk, c.h, D], dtype, &embed(&x.v, c.b, nk, c.h, tk)).unwrap();
            let (q, k, v) =
                (qb.narrow(1, PAD, nq).unwrap(), kb.narrow(1, PAD, nk).unwrap(), vb.narrow(1, PAD, nk).unwrap());
            let out = Tensor::empty(&dev, &[c.b, nq, c.h, D], dtype).unwrap();
            for variant in runnable(&dev) {
                out.fill_nan().unwrap();
                wgmma::attention_wgmma_with_variant(&q, &k, &v, 1.0 / (D as f32).sqrt(), &out, variant)
                    .unwrap();
                let got = out.to_f32_vec().unwrap();
                check_all_rows(&c, &x, dtype, &got, &format!("NaN-padded views {dtype} {nq}x{nk} {}", variant.name()));
            }
        }
    }
}

#[test]
fn bad_inputs_are_errors() {
    let Some(dev) = hopper("bad_inputs_are_errors") else { return };
    // Zero-size tensors stay unfilled (there is nothing to memset).
    let t = |shape: &[usize], dtype| {
        if shape.contains(&0) { Tensor::empty(&dev, shape, dtype) } else { Tensor::zeros(&dev, shape, dtype) }.unwrap()
    };
    let bf = DType::BF16;
    let (q, k, v, out) = (t(&[1, 8, 2, D], bf), t(&[1, 16, 2, D], bf), t(&[1, 16, 2, D], bf), t(&[1, 8, 2, D], bf));
    let f = wgmma::attention_wgmma;
    assert!(f(&q, &k, &v, 0.1, &out).is_ok());
    assert!(wgmma::wgmma_supported(&q, &k, &v, &out));
    // Head dims without a kernel.
    for d in [64, 80] {
        let (qd, kd, od) = (t(&[1, 8, 2, d], bf), t(&[1, 16, 2, d], bf), t(&[1, 8, 2, d], bf));
        let e = f(&qd, &kd, &kd, 0.1, &od).unwrap_err().to_string();
        assert!(e.contains("head_dim"), "{e}");
        assert!(!wgmma::wgmma_supported(&qd, &kd, &kd, &od));
    }
    // Dtype mismatch and unsupported dtype.
    let kf16 = t(&[1, 16, 2, D], DType::F16);
    let e = f(&q, &kf16, &v, 0.1, &out).unwrap_err().to_string();
    assert!(e.contains("dtype") && e.contains("k"), "{e}");
    let (q32, k32, o32) = (t(&[1, 8, 2, D], DType::F32), t(&[1, 16, 2, D], DType::F32), t(&[1, 8, 2, D], DType::F32));
    assert!(f(&q32, &k32, &k32, 0.1, &o32).is_err());
    assert!(!wgmma::wgmma_supported(&q32, &k32, &k32, &o32));
    // Shape mismatches: heads of k, length of v, shape of out, rank.
    assert!(f(&q, &t(&[1, 16, 3, D], bf), &v, 0.1, &out).is_err());
    assert!(f(&q, &k, &t(&[1, 15, 2, D], bf), 0.1, &out).is_err());
    assert!(f(&q, &k, &v, 0.1, &t(&[1, 9, 2, D], bf)).is_err());
    assert!(f(&t(&[8, 2, D], bf), &k, &v, 0.1, &out).is_err());
    // No keys, bad scale.
    let k0 = t(&[1, 0, 2, D], bf);
    assert!(f(&q, &k0, &k0, 0.1, &out).is_err());
    assert!(f(&q, &k, &v, 0.0, &out).is_err());
    assert!(f(&q, &k, &v, f32::NAN, &out).is_err());
    // Views the copy engine cannot take: a start 2 elements into a row (4 bytes: misaligned), and heads
    // 132 elements apart (264 bytes, not a multiple of 16).
    let wide = t(&[1, 8, 2, D + 8], bf);
    let shifted = wide.narrow(3, 2, D).unwrap();
    let e = f(&shifted, &k, &v, 0.1, &out).unwrap_err().to_string();
    assert!(e.contains("copy engine"), "{e}");
    assert!(!wgmma::wgmma_supported(&shifted, &k, &v, &out));
    let odd = t(&[1, 16, 2, D + 4], bf).narrow(3, 0, D).unwrap();
    let e = f(&q, &odd, &v, 0.1, &out).unwrap_err().to_string();
    assert!(e.contains("copy engine") && e.contains("k"), "{e}");
    let odd_out = t(&[1, 8, 2, D + 4], bf).narrow(3, 0, D).unwrap();
    let e = f(&q, &k, &v, 0.1, &odd_out).unwrap_err().to_string();
    assert!(e.contains("out"), "{e}");
    // A variant that is not instantiated.
    let odd_variant = Variant { block_n: 96, stages: 2, pingpong: true };
    assert!(wgmma::attention_wgmma_with_variant(&q, &k, &v, 0.1, &out, odd_variant).is_err());
    // Nothing to do is fine.
    let (qe, oe) = (t(&[1, 0, 2, D], bf), t(&[1, 0, 2, D], bf));
    assert!(f(&qe, &k, &v, 0.1, &oe).is_ok());
}

/// Compares a 64×128 probe result with its f64 reference; elementwise bound 2e-5·Σ|terms| + 1e-6 (f32
/// accumulation of 128 products in any order stays far inside it; a layout error is off by O(1)). On
/// failure names the first bad element and the reference element its value matches best, which tells a
/// permuted layout from garbage.
fn check_probe(what: &str, got: &[f32], want: &[f64], mag: &[f64]) {
    assert!(got.iter().all(|g| g.is_finite()), "{what}: non-finite output (not written?)");
    let bad = (0..want.len()).find(|&i| (got[i] as f64 - want[i]).abs() > 2e-5 * mag[i] + 1e-6);
    if let Some(i) = bad {
        let best = (0..want.len())
            .min_by(|&a, &b| (want[a] - got[i] as f64).abs().total_cmp(&(want[b] - got[i] as f64).abs()))
            .unwrap();
        let wrong = (0..want.len()).filter(|&j| (got[j] as f64 - want[j]).abs() > 2e-5 * mag[j] + 1e-6).count();
        panic!(
            "{what}: {wrong} of {} elements wrong; first at (row {}, col {}): got {} want {}; closest reference value is at (row {}, col {})",
            want.len(),
            i / 128,
            i % 128,
            got[i],
            want[i],
            best / 128,
            best % 128
        );
    }
    eprintln!("{what}: ok");
}

/// S = A·Bᵀ through the attention kernel's TMA copies (128-byte swizzle), K-major descriptors, K-step
/// advance and accumulator layout, for both 64-row halves of the Q tile.
#[test]
fn probe_qk() {
    let Some(dev) = hopper("probe_qk") else { return };
    let mut rng = common::rng("probe_qk");
    for dtype in [DType::BF16, DType::F16] {
        let a = common::quantize(&common::randn(&mut rng, 128 * 128, 1.0), dtype);
        let b = common::quantize(&common::randn(&mut rng, 128 * 128, 1.0), dtype);
        let at = Tensor::from_f32(&dev, &[1, 128, 1, 128], dtype, &a).unwrap();
        let bt = Tensor::from_f32(&dev, &[1, 128, 1, 128], dtype, &b).unwrap();
        let out = Tensor::empty(&dev, &[64 * 128], DType::F32).unwrap();
        for half in 0..2 {
            out.fill_nan().unwrap();
            wgmma::probe_qk(&at, &bt, half as u32, &out).unwrap();
            let got = out.to_f32_vec().unwrap();
            let (mut want, mut mag) = (vec![0f64; 64 * 128], vec![0f64; 64 * 128]);
            for r in 0..64 {
                for c in 0..128 {
                    let row = &a[(64 * half + r) * 128..][..128];
                    let col = &b[c * 128..][..128];
                    want[r * 128 + c] = row.iter().zip(col).map(|(&x, &y)| x as f64 * y as f64).sum();
                    mag[r * 128 + c] = row.iter().zip(col).map(|(&x, &y)| (x as f64 * y as f64).abs()).sum();
                }
            }
            check_probe(&format!("probe S = Q·Kᵀ {dtype} rows {}..", 64 * half), &got, &want, &mag);
        }
    }
}

/// O = P·V through the attention kernel's A-from-register fragments (loaded straight from memory in the
/// documented layout), the transposed (MN-major) V descriptor and the accumulator layout.
#[test]
fn probe_pv() {
    let Some(dev) = hopper("probe_pv") else { return };
    let mut rng = common::rng("probe_pv");
    for dtype in [DType::BF16, DType::F16] {
        let p = common::quantize(&common::randn(&mut rng, 64 * 128, 1.0), dtype);
        let v = common::quantize(&common::randn(&mut rng, 128 * 128, 1.0), dtype);
        let pt = Tensor::from_f32(&dev, &[64 * 128], dtype, &p).unwrap();
        let vt = Tensor::from_f32(&dev, &[1, 128, 1, 128], dtype, &v).unwrap();
        let out = Tensor::empty(&dev, &[64 * 128], DType::F32).unwrap();
        out.fill_nan().unwrap();
        wgmma::probe_pv(&pt, &vt, &out).unwrap();
        let got = out.to_f32_vec().unwrap();
        let (mut want, mut mag) = (vec![0f64; 64 * 128], vec![0f64; 64 * 128]);
        for r in 0..64 {
            for c in 0..128 {
                for k in 0..128 {
                    let t = p[r * 128 + k] as f64 * v[k * 128 + c] as f64;
                    want[r * 128 + c] += t;
                    mag[r * 128 + c] += t.abs();
                }
            }
        }
        check_probe(&format!("probe O = P·V {dtype}"), &got, &want, &mag);
    }
}

/// Every variant fits an H100's opt-in shared memory (227 KiB) and its size matches the kernel's layout
/// (1 KiB alignment slack, Q tile, K and V slots, mbarriers). CPU only.
#[test]
fn variant_table() {
    let vs = wgmma::variants();
    assert_eq!(vs[0].name(), "n128s2p", "default variant");
    let mut names: Vec<String> = vs.iter().map(Variant::name).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), vs.len(), "variant names must be unique");
    for v in vs {
        assert!(v.block_n % 16 == 0 && v.block_n <= 256 && v.stages >= 2, "{v:?}");
        assert!(v.shared_bytes() <= 232_448, "{v:?} needs {} bytes", v.shared_bytes());
        let expect = 1024 + 128 * 256 + 2 * v.stages * v.block_n * 256 + (1 + 4 * v.stages) * 8;
        assert_eq!(v.shared_bytes(), expect, "{v:?}");
    }
    assert_eq!(vs[0].shared_bytes(), 164_936);
}

/// How (B, N, H, d) views become 4-d tensor maps (dimension order by stride, byte strides, the order
/// code the kernel decodes, the copy box). CPU only.
#[test]
fn map_layouts() {
    let layout = |shape: [usize; 4], strides: [usize; 4]| wgmma::map_layout(&shape, &strides, 2);
    // Contiguous (B, N, H, d): head, token, batch.
    let m = layout([2, 300, 3, 128], [300 * 384, 384, 128, 1]).unwrap();
    assert_eq!(m, MapLayout { dims: [128, 3, 300, 2], byte_strides: [256, 768, 230_400], order: [1, 0, 2] });
    assert_eq!(m.code(), 1 | (2 << 4));
    assert_eq!(m.box_dims(128), [64, 1, 128, 1]);
    // A head slice of a fused QKV buffer (B, N, H, 3·d): same order, wider strides.
    let m = layout([2, 200, 3, 128], [200 * 1152, 1152, 384, 1]).unwrap();
    assert_eq!(m.byte_strides, [768, 2304, 460_800]);
    assert_eq!(m.order, [1, 0, 2]);
    // Head-major storage (B, H, N, d) seen as (B, N, H, d): token, head, batch; the box runs along dim 1.
    let m = layout([2, 300, 3, 128], [3 * 300 * 128, 128, 300 * 128, 1]).unwrap();
    assert_eq!(m, MapLayout { dims: [128, 300, 3, 2], byte_strides: [256, 76_800, 230_400], order: [0, 1, 2] });
    assert_eq!(m.code(), (1 << 2) | (2 << 4));
    assert_eq!(m.box_dims(176), [64, 176, 1, 1]);
    // One head, one batch: size-1 dimensions go last with the span so far as their stride.
    let m = layout([1, 300, 1, 128], [300 * 128, 128, 128, 1]).unwrap();
    assert_eq!(m.order[0], 0);
    assert_eq!(m.dims, [128, 300, 1, 1]);
    assert_eq!(m.byte_strides, [256, 76_800, 76_800]);
    // Not addressable: overlapping rows, strides not a multiple of 16 bytes, non-unit stride over d,
    // overlapping heads.
    assert!(layout([1, 300, 2, 128], [0, 64, 128 * 300, 1]).is_none());
    assert!(layout([1, 300, 2, 128], [0, 260, 132, 1]).is_none());
    assert!(layout([1, 300, 2, 128], [0, 512, 256, 2]).is_none());
    assert!(layout([1, 300, 4, 128], [0, 256, 128, 1]).is_none());
}

/// The sm_90a build of attention_wgmma.cu holds the Hopper instructions (the arch-specific feature
/// macro is seen by NVRTC) and the other targets compile to the trap stub. Needs libnvrtc, no GPU.
#[test]
fn sm90a_ptx_has_wgmma_and_tma() {
    let ptx = |target: &str| {
        let out = registry::compile("attention_wgmma", target).unwrap_or_else(|e| panic!("{target}: {e}"));
        String::from_utf8_lossy(&out.image).into_owned()
    };
    let hopper = ptx("compute_90a");
    for needle in [
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16",
        "wgmma.mma_async.sync.aligned.m64n176k16.f32.f16.f16",
        "cp.async.bulk.tensor.4d",
        "setmaxnreg.inc",
        "mbarrier.try_wait",
    ] {
        assert!(hopper.contains(needle), "sm_90a PTX lacks {needle}");
    }
    for v in wgmma::variants() {
        for dt in ["bf16", "f16"] {
            let entry = format!(".entry attn_fwd_wgmma_{dt}_d128_{}(", v.name());
            assert!(hopper.contains(&entry), "sm_90a PTX lacks {entry}");
        }
    }
    for entry in ["attn_wgmma_probe_qk_bf16", "attn_wgmma_probe_pv_f16"] {
        assert!(hopper.contains(&format!(".entry {entry}(")), "sm_90a PTX lacks {entry}");
    }
    let ampere = ptx("compute_80");
    assert!(!ampere.contains("wgmma.mma_async") && ampere.contains("trap"), "the sm_80 build must be the trap stub");
}

/// The SASS of the sm_90a CUBIN uses HGMMA (the check), when `cuobjdump` is installed (on the
/// GPU machine with the CUDA toolkit); otherwise says why it skips, or fails with
/// `WANRT_REQUIRE_CUOBJDUMP=1` (as tests/kernels_sass.rs). Needs libnvrtc, no GPU.
#[test]
fn sm90a_sass_has_hgmma() {
    let tool = ["cuobjdump", "/usr/local/cuda/bin/cuobjdump"]
        .into_iter()
        .find(|t| std::process::Command::new(t).arg("--version").output().is_ok_and(|o| o.status.success()));
    let Some(tool) = tool else {
        if std::env::var("WANRT_REQUIRE_CUOBJDUMP").is_ok_and(|v| v == "1") {
            panic!("sm90a_sass_has_hgmma: WANRT_REQUIRE_CUOBJDUMP=1 but cuobjdump not found (PATH or /usr/local/cuda/bin)");
        }
        eprintln!("skipping sm90a_sass_has_hgmma: cuobjdump not found (PATH or /usr/local/cuda/bin)");
        return;
    };
    let out = registry::compile("attention_wgmma", "sm_90a").unwrap();
    let path = std::env::temp_dir().join(format!("wanrt-attention-wgmma-{}.cubin", std::process::id()));
    std::fs::write(&path, &out.image).unwrap();
    let dump = std::process::Command::new(tool).arg("--dump-sass").arg(&path).output().unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(dump.status.success(), "cuobjdump failed: {}", String::from_utf8_lossy(&dump.stderr));
    let sass = String::from_utf8_lossy(&dump.stdout);
    let hgmma = sass.matches("HGMMA.64x128x16.F32").count();
    eprintln!("{hgmma} HGMMA.64x128x16 instructions, {} HMMA", sass.matches(" HMMA").count());
    assert!(hgmma > 0 && sass.contains("HGMMA.64x176x16.F32"), "no HGMMA in the sm_90a SASS");
    assert!(sass.contains("UTMALDG") && sass.contains("USETMAXREG"), "no TMA load or setmaxnreg in the SASS");
    assert!(!sass.contains(" HMMA"), "the sm_90a kernel must not fall back to mma.sync");
}
