//! The f32 row-sharing wgmma conv (`ops::conv::wgmma_tf32_rows`, 3xTF32 on wgmma.m64nNk8 tf32, sm_90a)
//! against a CPU f64 reference, on fresh random inputs with NaN-poisoned outputs, for the default tile
//! and every instantiated tile, on compute capability 9.0 (elsewhere the tests check the refusal and
//! skip): 3×3×3 causal convs with no cache and with caches of 1 and 2 frames, 1 and 2 frames of x;
//! 2-D 3×3 convs (kt = 1), a height stride of 2 and a 1×3 kernel; widths 1, 7 and 13 (every padded
//! row position against the 128-row tiles); Cin 16, 32, 48, 96, 160, 192 (16-channel stages; 48 and
//! 16 give odd stage counts, which the two-stage groups pad with a zero-filled stage); Cout 3, 40, 72,
//! 96, 130, 192, 200 (partial N tiles of 96 and 192; 3 and 130 not multiples of 4: element stores);
//! batch 2; bias and residual on and off; residual = out in place.
//!
//! Tolerance: tests/gpu_ops_conv_tf32.rs's, unchanged: the reference's f32 evaluation error δ = (K +
//! 2)·u32·(Σ|x·w| + |bias| + |residual|), then one rounding (`reference::tol`); the worst ratio to it is
//! printed per run. `wide_channels_f32_rows` also bounds the relative RMS error of the long reductions
//! (K = 2,592, 5,184 and 10,368) by the same [`RMS_BOUND`] as the mma.sync 3xTF32 kernel, which a kernel
//! chaining the whole K range through the tensor cores' truncating sums fails (modelled 7.3e-5 at K =
//! 10,368) and the per-stage flushed partials pass (modelled 4.3e-7 with one-stage partials, 7e-7 with
//! two-stage ones).

mod common;
mod reference;

use std::sync::Arc;

use rand::rngs::StdRng;
use rand::Rng;
use reference as rf;
use wanrt::runtime::gpu::Arch;
use wanrt::runtime::ops::conv::wgmma_tf32_rows::{self as rows, Tf32RowTile};
use wanrt::runtime::ops::conv::{Conv3dGeom, ConvArgs};
use wanrt::{DType, Device, Tensor};

const F32: DType = DType::F32;

/// Relative RMS error bound of the long reductions: tests/gpu_ops_conv_tf32.rs's (about twice an f32
/// FMA chain's at K = 10,368).
const RMS_BOUND: f64 = 4e-6;

/// One conv call: x [b, t, h, w, cin], prev [b, p, h, w, cin] when `prev` is Some(p), w [cout, k.0,
/// k.1, k.2, cin].
#[derive(Clone, Copy, Debug)]
struct Case {
    b: usize,
    t: usize,
    prev: Option<usize>,
    h: usize,
    w: usize,
    cin: usize,
    cout: usize,
    k: (usize, usize, usize),
    pad_t: usize,
    pad_h: (usize, usize),
    pad_w: (usize, usize),
    stride: (usize, usize, usize),
    bias: bool,
    residual: bool,
}

impl Case {
    fn geom(&self) -> Conv3dGeom {
        Conv3dGeom { pad_t: self.pad_t, pad_h: self.pad_h, pad_w: self.pad_w, stride: self.stride }
    }
    fn p(&self) -> usize {
        self.prev.unwrap_or(0)
    }
    /// (To, Ho, Wo).
    fn out_dims(&self) -> (usize, usize, usize) {
        let to = (self.pad_t + self.p() + self.t - self.k.0) / self.stride.0 + 1;
        let ho = (self.h + self.pad_h.0 + self.pad_h.1 - self.k.1) / self.stride.1 + 1;
        let wo = (self.w + self.pad_w.0 + self.pad_w.1 - self.k.2) / self.stride.2 + 1;
        (to, ho, wo)
    }
    fn m(&self) -> usize {
        let (to, ho, wo) = self.out_dims();
        self.b * to * ho * wo
    }
    fn taps(&self) -> usize {
        self.k.0 * self.k.1 * self.k.2
    }
}

/// Host copies of the inputs (f32, what the device reads).
struct Inputs {
    x: Vec<f32>,
    prev: Vec<f32>,
    w: Vec<f32>,
    bias: Vec<f32>,
    residual: Vec<f32>,
}

fn inputs(c: &Case, rng: &mut StdRng) -> Inputs {
    // Unit-variance activations and weights of variance 1/K: outputs of order 1.
    let wscale = 1.0 / (c.taps() * c.cin) as f32;
    Inputs {
        x: common::randn(rng, c.b * c.t * c.h * c.w * c.cin, 1.0),
        prev: common::randn(rng, c.b * c.p() * c.h * c.w * c.cin, 1.0),
        w: common::randn(rng, c.cout * c.taps() * c.cin, wscale.sqrt()),
        bias: if c.bias { common::randn(rng, c.cout, 0.5) } else { Vec::new() },
        residual: if c.residual { common::randn(rng, c.m() * c.cout, 1.0) } else { Vec::new() },
    }
}

/// The f64 reference of output rows `rows` (all channels each) and the per-element f32 bound
/// (tests/gpu_ops_conv_tf32.rs's: δ = (K + 2)·u32·(Σ|x·w| + |bias| + |residual|), then `rf::tol`).
fn reference(c: &Case, x: &Inputs, rows: &[usize]) -> (Vec<f64>, Vec<f64>) {
    let (to_n, ho_n, wo_n) = c.out_dims();
    let (kt, kh, kw) = c.k;
    let p = c.p();
    let kk = (c.taps() * c.cin) as f64;
    let mut want = Vec::with_capacity(rows.len() * c.cout);
    let mut bound = Vec::with_capacity(rows.len() * c.cout);
    let mut pix: Vec<Option<&[f32]>> = Vec::with_capacity(c.taps());
    for &m in rows {
        let (wo, r) = (m % wo_n, m / wo_n);
        let (ho, r) = (r % ho_n, r / ho_n);
        let (to, b) = (r % to_n, r / to_n);
        // The input pixel of every tap (None: a causal zero frame or spatial padding).
        pix.clear();
        for dt in 0..kt {
            for dh in 0..kh {
                for dw in 0..kw {
                    let l = to * c.stride.0 + dt;
                    let hi = (ho * c.stride.1 + dh) as isize - c.pad_h.0 as isize;
                    let wi = (wo * c.stride.2 + dw) as isize - c.pad_w.0 as isize;
                    let inside = l >= c.pad_t && hi >= 0 && (hi as usize) < c.h && wi >= 0 && (wi as usize) < c.w;
                    pix.push(inside.then(|| {
                        let (f, hi, wi) = (l - c.pad_t, hi as usize, wi as usize);
                        let (src, frame, frames) = if f < p { (&x.prev, f, p) } else { (&x.x, f - p, c.t) };
                        let at = (((b * frames + frame) * c.h + hi) * c.w + wi) * c.cin;
                        &src[at..at + c.cin]
                    }));
                }
            }
        }
        for n in 0..c.cout {
            let (mut sum, mut mag) = (0f64, 0f64);
            for (tap, px) in pix.iter().enumerate() {
                let Some(px) = px else { continue };
                let wrow = &x.w[(n * c.taps() + tap) * c.cin..][..c.cin];
                for (&a, &b) in px.iter().zip(wrow) {
                    let t = a as f64 * b as f64;
                    sum += t;
                    mag += t.abs();
                }
            }
            if c.bias {
                sum += x.bias[n] as f64;
                mag += (x.bias[n] as f64).abs();
            }
            if c.residual {
                let r = x.residual[m * c.cout + n] as f64;
                sum += r;
                mag += r.abs();
            }
            want.push(sum);
            bound.push(rf::tol(F32, sum, (kk + 2.0) * rf::E32 * mag));
        }
    }
    (want, bound)
}

/// The output rows checked: all of them when the f64 reference costs at most 3·10^8 multiply-adds, else
/// the first and last 128 rows and random ones up to that budget.
fn checked_rows(c: &Case, rng: &mut StdRng) -> Vec<usize> {
    let m = c.m();
    let budget = (300_000_000 / (c.cout * c.taps() * c.cin).max(1)).max(320);
    if m <= budget {
        return (0..m).collect();
    }
    let mut rows: Vec<usize> = (0..128).chain(m - 128..m).collect();
    rows.extend((0..budget - 256).map(|_| rng.random_range(0..m)));
    rows
}

fn tensors(dev: &Arc<Device>, c: &Case, x: &Inputs) -> (Tensor, Option<Tensor>, Tensor, Option<Tensor>, Option<Tensor>) {
    let (to, ho, wo) = c.out_dims();
    let t = |shape: &[usize], v: &[f32]| Tensor::from_f32(dev, shape, F32, v).unwrap();
    (
        t(&[c.b, c.t, c.h, c.w, c.cin], &x.x),
        c.prev.map(|p| t(&[c.b, p, c.h, c.w, c.cin], &x.prev)),
        t(&[c.cout, c.k.0, c.k.1, c.k.2, c.cin], &x.w),
        c.bias.then(|| t(&[c.cout], &x.bias)),
        c.residual.then(|| t(&[c.b, to, ho, wo, c.cout], &x.residual)),
    )
}

/// The worst |got − want| / bound over the checked rows, with its (row, channel); NaN counts as ∞.
fn worst(c: &Case, got: &[f32], rows: &[usize], want: &[f64], bound: &[f64]) -> (f64, usize, usize) {
    let mut worst = (0f64, 0, 0);
    for (j, &m) in rows.iter().enumerate() {
        for n in 0..c.cout {
            let err = (got[m * c.cout + n] as f64 - want[j * c.cout + n]).abs();
            let ratio = if err.is_nan() { f64::INFINITY } else { err / bound[j * c.cout + n] };
            if ratio > worst.0 {
                worst = (ratio, m, n);
            }
        }
    }
    worst
}

/// sqrt(mean((got − want)²)) / sqrt(mean(want²)) over the checked rows.
fn relative_rms(c: &Case, got: &[f32], rows: &[usize], want: &[f64]) -> f64 {
    let (mut err, mut norm) = (0f64, 0f64);
    for (j, &m) in rows.iter().enumerate() {
        for n in 0..c.cout {
            let w = want[j * c.cout + n];
            err += (got[m * c.cout + n] as f64 - w).powi(2);
            norm += w * w;
        }
    }
    (err / norm).sqrt()
}

/// The device when it is compute capability 9.0 (the kernel's only target), else `None` after checking
/// that a call the kernel takes on sm_90 is refused with the reason.
fn hopper(test: &str) -> Option<Arc<Device>> {
    let dev = common::gpu(test)?;
    if dev.arch() == Arch::new(9, 0) {
        return Some(dev);
    }
    let z = |shape: &[usize]| Tensor::zeros(&dev, shape, F32).unwrap();
    let geom = Conv3dGeom { pad_t: 2, pad_h: (1, 1), pad_w: (1, 1), stride: (1, 1, 1) };
    let e = rows::refusal(&ConvArgs::new(&z(&[1, 1, 4, 4, 16]), &z(&[8, 3, 3, 3, 16]), geom, &z(&[1, 1, 4, 4, 8])));
    let msg = e.map(|e| e.to_string()).unwrap_or_default();
    assert!(msg.contains("9.0"), "{test}: on {} ({}) the kernel must refuse for the device, got {msg:?}", dev.name(), dev.arch());
    eprintln!("{test}: skipped: {} is {}, the kernel is sm_90a only", dev.name(), dev.arch());
    None
}

/// Runs `c` through the default tile and every tile, each into a NaN-poisoned output, and checks each
/// against the bound; then residual = out in place when the case has a residual. Returns the largest
/// relative RMS error of the runs.
fn check_case(dev: &Arc<Device>, rng: &mut StdRng, c: Case) -> f64 {
    let x = inputs(&c, rng);
    let (xt, prev, w, bias, residual) = tensors(dev, &c, &x);
    let (to, ho, wo) = c.out_dims();
    let out = Tensor::empty(dev, &[c.b, to, ho, wo, c.cout], F32).unwrap();
    let args = ConvArgs::new(&xt, &w, c.geom(), &out).prev(prev.as_ref()).bias(bias.as_ref()).residual(residual.as_ref());
    if let Some(e) = rows::refusal(&args) {
        panic!("{c:?}: refused: {e}");
    }
    let checked = checked_rows(&c, rng);
    let (want, bound) = reference(&c, &x, &checked);
    let mut max_rms = 0f64;
    let mut runs: Vec<(String, Option<Tf32RowTile>)> = vec![(format!("default ({})", rows::default_tile(c.cout).name()), None)];
    runs.extend(rows::tiles().iter().map(|&t| (t.name(), Some(t))));
    for (name, tile) in runs {
        out.fill_nan().unwrap();
        let res = match tile {
            None => rows::conv3d_wgmma_tf32_rows(&args),
            Some(t) => rows::conv3d_wgmma_tf32_rows_with_tile(&args, t),
        };
        res.unwrap_or_else(|e| panic!("{c:?} tile {name}: {e}"));
        let got = out.to_f32_vec().unwrap();
        if let Some(i) = got.iter().position(|g| !g.is_finite()) {
            panic!("{c:?} tile {name}: output element {i} is {} (not written or NaN)", got[i]);
        }
        let (ratio, m, n) = worst(&c, &got, &checked, &want, &bound);
        let rms = relative_rms(&c, &got, &checked, &want);
        max_rms = max_rms.max(rms);
        eprintln!("tf32 rows {name}: worst error {ratio:.4} of the f32 bound, relative RMS {rms:.3e} ({} rows checked)", checked.len());
        let j = checked.iter().position(|&r| r == m).unwrap_or(0);
        assert!(
            ratio <= 1.0,
            "{c:?} tile {name}: row {m} channel {n}: got {} want {} ({ratio:.2}x the f32 bound)",
            got[m * c.cout + n],
            want[j * c.cout + n]
        );
    }
    // residual = out in place (the residual tensor is overwritten, so this runs last): each residual
    // element is read before the same thread writes it.
    if let Some(inplace) = residual.as_ref() {
        rows::conv3d_wgmma_tf32_rows(&ConvArgs { residual: Some(inplace), out: inplace, ..args })
            .unwrap_or_else(|e| panic!("{c:?} in place: {e}"));
        let got = inplace.to_f32_vec().unwrap();
        let (ratio, m, n) = worst(&c, &got, &checked, &want, &bound);
        assert!(ratio <= 1.0, "{c:?} residual = out: row {m} channel {n}: {ratio:.2}x the f32 bound");
    }
    max_rms
}

/// A 3×3×3 causal conv with Wan's padding (2 zero frames, 1 pixel each side), bias, no residual.
fn causal(b: usize, t: usize, h: usize, w: usize, cin: usize, cout: usize) -> Case {
    Case { b, t, prev: None, h, w, cin, cout, k: (3, 3, 3), pad_t: 2, pad_h: (1, 1), pad_w: (1, 1), stride: (1, 1, 1), bias: true, residual: false }
}

/// The kernel's geometries at small odd sizes (the module docs list the edges each case covers).
fn cases() -> Vec<Case> {
    let c = causal;
    vec![
        // Causal 3×3×3, the first chunk (no cache): 1 and 2 frames, 2 zero frames in front.
        c(1, 1, 9, 13, 32, 40),
        Case { residual: true, ..c(2, 2, 7, 7, 96, 130) },
        // A cache of 1 frame (pad_t 1) and of 2 frames (pad_t 0), as the chunked loop runs them.
        Case { prev: Some(1), pad_t: 1, ..c(1, 2, 5, 1, 160, 200) },
        Case { prev: Some(1), pad_t: 1, bias: false, residual: true, ..c(1, 1, 6, 13, 32, 40) },
        Case { prev: Some(2), pad_t: 0, residual: true, ..c(1, 1, 6, 13, 96, 3) },
        Case { prev: Some(2), pad_t: 0, bias: false, ..c(1, 2, 5, 7, 32, 200) },
        Case { prev: Some(2), pad_t: 0, ..c(2, 1, 4, 7, 32, 96) },
        // Odd stage counts (9 taps × 3 blocks; 3 taps × 1 block): the two-stage groups' zero stage.
        Case { prev: Some(2), pad_t: 0, residual: true, ..c(1, 2, 5, 13, 48, 96) },
        Case { k: (1, 3, 3), pad_t: 0, residual: true, ..c(2, 3, 6, 7, 16, 40) },
        // 2-D 3×3 (kt = 1): every width, a height stride of 2, 192 channels (one n192 tile).
        Case { k: (1, 3, 3), pad_t: 0, ..c(1, 2, 9, 1, 96, 72) },
        Case { k: (1, 3, 3), pad_t: 0, stride: (1, 2, 1), ..c(1, 2, 9, 13, 96, 72) },
        Case { k: (1, 3, 3), pad_t: 0, residual: true, ..c(1, 2, 7, 13, 192, 192) },
        // A 1×3 kernel (kh = 1, no height padding): one (dt, dh) tap.
        Case { k: (1, 1, 3), pad_t: 0, pad_h: (0, 0), ..c(1, 2, 5, 7, 32, 40) },
    ]
}

#[test]
fn conv_kinds_f32_rows() {
    let Some(dev) = hopper("conv_kinds_f32_rows") else { return };
    let mut rng = common::rng("conv_kinds_f32_rows");
    for c in cases() {
        eprintln!("{c:?}");
        check_case(&dev, &mut rng, c);
    }
}

/// The widest layers at a VAE-like size: 384 → 384 channels, K = 10,368, a 2-frame cache, M = 3,120
/// (3,224 padded-width rows, not a multiple of 128), rows sampled; 96 → 96 (K = 2,592) at a wider
/// frame; 192 → 192 (K = 5,184) after a 1-frame cache. Besides the per-element bound, the relative RMS
/// error of every run is at most [`RMS_BOUND`].
#[test]
fn wide_channels_f32_rows() {
    let Some(dev) = hopper("wide_channels_f32_rows") else { return };
    let mut rng = common::rng("wide_channels_f32_rows");
    let wide = Case { prev: Some(2), pad_t: 0, residual: true, ..causal(1, 2, 30, 52, 384, 384) };
    for c in [wide, causal(1, 1, 24, 104, 96, 96), Case { prev: Some(1), pad_t: 1, ..causal(1, 2, 12, 40, 192, 192) }] {
        let rms = check_case(&dev, &mut rng, c);
        eprintln!("{c:?}: largest relative RMS error {rms:.3e}");
        assert!(rms <= RMS_BOUND, "{c:?}: relative RMS error {rms:.3e} above {RMS_BOUND:e}");
    }
}

/// Calls this path must refuse, each with a reason naming the cause; `conv3d_wgmma_tf32_rows` returns
/// the same error instead of launching, and a tile outside the table is an error.
#[test]
fn refusals_give_reasons_f32_rows() {
    let Some(dev) = hopper("refusals_give_reasons_f32_rows") else { return };
    let z = |shape: &[usize], dtype| Tensor::zeros(&dev, shape, dtype).unwrap();
    let geom = Conv3dGeom { pad_t: 2, pad_h: (1, 1), pad_w: (1, 1), stride: (1, 1, 1) };
    let expect = |what: &str, x: &Tensor, w: &Tensor, geom: &Conv3dGeom, out: &Tensor, needle: &str| {
        let args = ConvArgs::new(x, w, *geom, out);
        let e = rows::refusal(&args).unwrap_or_else(|| panic!("{what}: not refused"));
        let msg = e.to_string();
        eprintln!("{what}: {msg}");
        assert!(msg.contains(needle), "{what}: reason {msg:?} does not say {needle:?}");
        let run = rows::conv3d_wgmma_tf32_rows(&args).expect_err(what).to_string();
        assert_eq!(run, msg, "{what}: conv3d_wgmma_tf32_rows and refusal disagree");
    };
    let x16 = z(&[1, 1, 4, 4, 16], F32);
    for cin in [8, 20, 36] {
        expect(&format!("Cin {cin}"), &z(&[1, 1, 4, 4, cin], F32), &z(&[8, 3, 3, 3, cin], F32), &geom, &z(&[1, 1, 4, 4, 8], F32), "multiple of 16");
    }
    let bf = DType::BF16;
    expect("bf16", &z(&[1, 1, 4, 4, 16], bf), &z(&[8, 3, 3, 3, 16], bf), &geom, &z(&[1, 1, 4, 4, 8], bf), "f32");
    let valid = Conv3dGeom { pad_t: 0, pad_h: (0, 0), pad_w: (0, 0), stride: (1, 1, 1) };
    expect("1×1×1", &x16, &z(&[8, 1, 1, 1, 16], F32), &valid, &z(&[1, 1, 4, 4, 8], F32), "3 taps");
    let strided = Conv3dGeom { stride: (1, 1, 2), ..geom };
    expect("width stride 2", &x16, &z(&[8, 3, 3, 3, 16], F32), &strided, &z(&[1, 1, 4, 2, 8], F32), "stride");
    let one_sided = Conv3dGeom { pad_w: (0, 1), pad_h: (0, 1), pad_t: 0, stride: (1, 1, 1) };
    expect("padding (0, 1)", &x16, &z(&[8, 1, 3, 3, 16], F32), &one_sided, &z(&[1, 1, 3, 3, 8], F32), "padding");
    let deep = Conv3dGeom { pad_t: 4, pad_h: (2, 2), ..geom };
    expect("5×5×3 kernel", &x16, &z(&[8, 5, 5, 3, 16], F32), &deep, &z(&[1, 1, 4, 4, 8], F32), "16");
    // Taken, and a tile outside the table is refused.
    let (w, out) = (z(&[8, 3, 3, 3, 16], F32), z(&[1, 1, 4, 4, 8], F32));
    let args = ConvArgs::new(&x16, &w, geom, &out);
    assert!(rows::refusal(&args).is_none());
    let odd = Tf32RowTile { block_n: 128, stages: 3, partials: 1, group: 1 };
    let e = rows::conv3d_wgmma_tf32_rows_with_tile(&args, odd).expect_err("tile n128");
    assert!(e.to_string().contains("not instantiated"), "{e}");
}

/// prev as a view into a longer cache buffer (frames 1..3 of 3, after a NaN frame the kernel must not
/// read) and out as a view into a buffer with a NaN frame after it (it must not write there).
#[test]
fn prev_and_out_as_views_f32_rows() {
    let Some(dev) = hopper("prev_and_out_as_views_f32_rows") else { return };
    let mut rng = common::rng("prev_and_out_as_views_f32_rows");
    let c = Case { prev: Some(2), pad_t: 0, ..causal(1, 2, 7, 11, 32, 48) };
    let x = inputs(&c, &mut rng);
    let (xt, _, w, bias, _) = tensors(&dev, &c, &x);
    let frame = c.h * c.w * c.cin;
    let mut cache = vec![f32::NAN; frame];
    cache.extend_from_slice(&x.prev);
    let cache = Tensor::from_f32(&dev, &[1, 3, c.h, c.w, c.cin], F32, &cache).unwrap();
    let prev = cache.narrow(1, 1, 2).unwrap();
    let (to, ho, wo) = c.out_dims();
    let out_buf = Tensor::empty(&dev, &[1, to + 1, ho, wo, c.cout], F32).unwrap();
    out_buf.fill_nan().unwrap();
    let out = out_buf.narrow(1, 0, to).unwrap();
    let n = to * ho * wo * c.cout;
    let (want, bound) = reference(&c, &x, &(0..c.m()).collect::<Vec<_>>());
    let args = ConvArgs::new(&xt, &w, c.geom(), &out).prev(Some(&prev)).bias(bias.as_ref());
    for &tile in rows::tiles() {
        rows::conv3d_wgmma_tf32_rows_with_tile(&args, tile).unwrap();
        let all = out_buf.to_f32_vec().unwrap();
        assert!(all[n..].iter().all(|v| v.is_nan()), "{}: wrote past the out view", tile.name());
        rf::assert_within(&format!("tf32 rows {} prev/out views", tile.name()), &all[..n], &want, &bound);
        out.fill_nan().unwrap();
    }
}
