//! The f32 conv3d on tensor cores (`ops::conv::tf32`, mma.sync tf32 with the 3xTF32 split) against a
//! CPU f64 reference, on fresh random inputs with NaN-poisoned outputs, for every instantiated tile
//! and the default choice: the VAE's conv kinds (3×3×3 causal with prev None / 1 / 2 frames, T 1 and
//! 2, 2D 3×3 pad 1, the stride-2 downsample with (0,1,0,1) padding, 1×1×1 shortcuts, 3×1×1 time
//! convs), odd sizes (Cin 4, 12, 20, 36: partial 16-channel K blocks; Cout not a multiple of any N
//! tile nor of 4; M not a multiple of any M tile; widths not multiples of 8), bias and residual on and
//! off, residual = out in place; and the dispatcher (`ops::conv3d` takes this kernel for f32).
//!
//! Tolerance: the f32 bound of tests/gpu_ops_conv.rs (the portable kernel's), unchanged: the
//! reference's f32 evaluation error δ = (K + 2)·u32·(Σ|x·w| + |bias| + |residual|) (Higham's γ for a
//! chain of K fused multiply-adds and the two additions), then one rounding (`reference::tol`). 3xTF32
//! drops small·small and the roundings of the small parts (about 3·2^-22·|x·w| per product at worst,
//! a few u32 typically), and the tensor cores sum the products of 8 or 16 k values into a partial that
//! is added to the f32 accumulator: the worst ratio to the bound is printed per run so the margin is on
//! record.
//!
//! That bound is a worst case, far above typical errors; `wide_channels_f32` also bounds the relative
//! RMS error of the long reductions (K = 2,592 and 10,368) at [`RMS_BOUND`], which catches a kernel
//! that chains the whole K range through the MMA accumulator (the tensor cores truncate every sum
//! toward zero: tools/tf32_accumulation.py models 1.8e-5 and 7.3e-5 for these K) and passes the
//! flushed one (modelled 2.5e-7 to 6.4e-7; an f32 FMA chain 0.9e-6 to 1.8e-6).

mod common;
mod reference;

use std::sync::Arc;

use rand::rngs::StdRng;
use rand::Rng;
use reference as rf;
use wanrt::runtime::ops::conv::tf32::{self, Tile};
use wanrt::runtime::ops::conv::{conv3d_portable, small_cin, Conv3dGeom, ConvArgs};
use wanrt::runtime::gpu::Arch;
use wanrt::runtime::ops;
use wanrt::{DType, Device, Tensor};

const F32: DType = DType::F32;

/// Relative RMS error bound of the long reductions (module docs): about twice an f32 FMA chain's at
/// K = 10,368.
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
/// (tests/gpu_ops_conv.rs's: δ = (K + 2)·u32·(Σ|x·w| + |bias| + |residual|), then `rf::tol`).
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
/// the first and last 128 rows (the first and last M tiles) and random ones up to that budget.
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

/// Runs `c` through the default tile choice and every tile, each into a NaN-poisoned output, and checks
/// each against the bound; then residual = out in place when the case has a residual. Returns the
/// largest relative RMS error of the runs.
fn check_case(dev: &Arc<Device>, rng: &mut StdRng, c: Case) -> f64 {
    let x = inputs(&c, rng);
    let (xt, prev, w, bias, residual) = tensors(dev, &c, &x);
    let (to, ho, wo) = c.out_dims();
    let out = Tensor::empty(dev, &[c.b, to, ho, wo, c.cout], F32).unwrap();
    let args = ConvArgs::new(&xt, &w, c.geom(), &out).prev(prev.as_ref()).bias(bias.as_ref()).residual(residual.as_ref());
    if let Some(e) = tf32::refusal(&args) {
        panic!("{c:?}: refused: {e}");
    }
    let rows = checked_rows(&c, rng);
    let (want, bound) = reference(&c, &x, &rows);
    let mut max_rms = 0f64;
    let mut runs: Vec<(String, Option<Tile>)> = vec![("default".into(), None)];
    runs.extend(tf32::tiles().iter().map(|&t| (t.name(), Some(t))));
    for (name, tile) in runs {
        out.fill_nan().unwrap();
        let res = match tile {
            None => tf32::conv3d_tf32(&args),
            Some(t) => tf32::conv3d_tf32_with_tile(&args, t),
        };
        res.unwrap_or_else(|e| panic!("{c:?} tile {name}: {e}"));
        let got = out.to_f32_vec().unwrap();
        if let Some(i) = got.iter().position(|g| !g.is_finite()) {
            panic!("{c:?} tile {name}: output element {i} is {} (not written or NaN)", got[i]);
        }
        let (ratio, m, n) = worst(&c, &got, &rows, &want, &bound);
        let rms = relative_rms(&c, &got, &rows, &want);
        max_rms = max_rms.max(rms);
        eprintln!("tf32 {name}: worst error {ratio:.4} of the f32 bound, relative RMS {rms:.3e} ({} rows checked)", rows.len());
        let j = rows.iter().position(|&r| r == m).unwrap_or(0);
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
        tf32::conv3d_tf32(&ConvArgs { residual: Some(inplace), out: inplace, ..args }).unwrap_or_else(|e| panic!("{c:?} in place: {e}"));
        let got = inplace.to_f32_vec().unwrap();
        let (ratio, m, n) = worst(&c, &got, &rows, &want, &bound);
        assert!(ratio <= 1.0, "{c:?} residual = out: row {m} channel {n}: {ratio:.2}x the f32 bound");
    }
    max_rms
}

/// A 3×3×3 causal conv with Wan's padding (2 zero frames, 1 pixel each side), bias, no residual.
fn causal(b: usize, t: usize, h: usize, w: usize, cin: usize, cout: usize) -> Case {
    Case {
        b,
        t,
        prev: None,
        h,
        w,
        cin,
        cout,
        k: (3, 3, 3),
        pad_t: 2,
        pad_h: (1, 1),
        pad_w: (1, 1),
        stride: (1, 1, 1),
        bias: true,
        residual: false,
    }
}

/// The VAE's conv kinds at small odd sizes. Tile edges: Cout 3, 20, 40, 70, 136, 200 against N tiles
/// of 32/64/96/128/192 (70 and 3: not multiples of 4, element stores); M from 63 to 1,530 against M
/// tiles of 64/128; widths 13, 7, 9, 15, 11; Cin 4, 12, 20, 36 (partial 16-channel K blocks per tap)
/// beside 16, 32, 48, 64, 96.
fn vae_cases() -> Vec<Case> {
    let c = causal;
    vec![
        // Causal 3×3×3, the first chunk (no cache): 1 and 2 frames, 2 zero frames in front.
        c(1, 1, 9, 13, 32, 40),
        Case { residual: true, ..c(2, 2, 7, 9, 16, 136) },
        c(1, 2, 6, 7, 4, 20),
        c(1, 1, 5, 11, 12, 70),
        // With a cache of 1 frame (pad_t 1) and 2 frames (pad_t 0), as the chunked loop runs them.
        Case { prev: Some(1), pad_t: 1, ..c(1, 2, 5, 7, 20, 24) },
        Case { prev: Some(1), pad_t: 1, bias: false, ..c(1, 1, 6, 13, 36, 20) },
        Case { prev: Some(2), pad_t: 0, bias: false, residual: true, ..c(1, 4, 11, 10, 96, 200) },
        Case { prev: Some(2), pad_t: 0, ..c(2, 1, 8, 11, 64, 96) },
        Case { prev: Some(2), pad_t: 0, residual: true, ..c(1, 2, 7, 9, 12, 68) },
        // conv_out of the decoder: Cout 3 (element stores), residual path of a non-multiple of 4.
        Case { prev: Some(2), pad_t: 0, residual: true, ..c(1, 2, 6, 9, 96, 3) },
        // 2D 3×3, padding 1, per frame (kt = 1).
        Case { k: (1, 3, 3), pad_t: 0, residual: true, ..c(2, 3, 17, 15, 64, 96) },
        Case { k: (1, 3, 3), pad_t: 0, ..c(1, 2, 9, 7, 20, 44) },
        // The downsamplers' stride-2 2D conv after ZeroPad2d(0, 1, 0, 1): even and odd sizes.
        Case { k: (1, 3, 3), pad_t: 0, pad_h: (0, 1), pad_w: (0, 1), stride: (1, 2, 2), ..c(1, 2, 18, 26, 32, 48) },
        Case { k: (1, 3, 3), pad_t: 0, pad_h: (0, 1), pad_w: (0, 1), stride: (1, 2, 2), bias: false, ..c(2, 1, 17, 15, 36, 36) },
        // 1×1×1 shortcut (and quant convs), with and without bias/residual; K = 4 is the smallest K.
        Case { k: (1, 1, 1), pad_t: 0, pad_h: (0, 0), pad_w: (0, 0), residual: true, ..c(1, 4, 6, 11, 96, 192) },
        Case { k: (1, 1, 1), pad_t: 0, pad_h: (0, 0), pad_w: (0, 0), bias: false, ..c(1, 1, 7, 9, 32, 32) },
        Case { k: (1, 1, 1), pad_t: 0, pad_h: (0, 0), pad_w: (0, 0), bias: false, ..c(1, 2, 9, 13, 4, 12) },
        Case { k: (1, 1, 1), pad_t: 0, pad_h: (0, 0), pad_w: (0, 0), residual: true, ..c(2, 1, 5, 7, 20, 9) },
        // downsample3d's time_conv: (3,1,1), stride (2,1,1), no padding, over [last cached frame ; 4].
        Case { k: (3, 1, 1), prev: Some(1), pad_t: 0, pad_h: (0, 0), pad_w: (0, 0), stride: (2, 1, 1), ..c(1, 4, 6, 10, 64, 64) },
        Case { k: (3, 1, 1), prev: None, pad_t: 0, pad_h: (0, 0), pad_w: (0, 0), stride: (2, 1, 1), ..c(2, 3, 5, 7, 12, 40) },
        // upsample3d's time_conv: (3,1,1), Cout = 2·Cin, 2 causal zero frames or a 2-frame cache.
        Case { k: (3, 1, 1), pad_h: (0, 0), pad_w: (0, 0), ..c(1, 1, 6, 13, 32, 64) },
        Case { k: (3, 1, 1), prev: Some(2), pad_t: 0, pad_h: (0, 0), pad_w: (0, 0), residual: true, ..c(1, 2, 5, 9, 48, 96) },
    ]
}

#[test]
fn vae_conv_kinds_f32() {
    let Some(dev) = common::gpu("vae_conv_kinds_f32") else { return };
    let mut rng = common::rng("vae_conv_kinds_f32");
    for c in vae_cases() {
        eprintln!("{c:?}");
        check_case(&dev, &mut rng, c);
    }
}

/// The widest layers at a VAE-like size: 384 → 384 channels, K = 10,368, a 2-frame cache, M = 3,120
/// (not a multiple of 64 or 128), rows sampled; and 96 → 96 (K = 2,592) at a wider frame. Besides the
/// per-element bound, the relative RMS error of every run is at most [`RMS_BOUND`].
#[test]
fn wide_channels_f32() {
    let Some(dev) = common::gpu("wide_channels_f32") else { return };
    let mut rng = common::rng("wide_channels_f32");
    let wide = Case { prev: Some(2), pad_t: 0, residual: true, ..causal(1, 2, 30, 52, 384, 384) };
    for c in [wide, causal(1, 1, 24, 104, 96, 96)] {
        let rms = check_case(&dev, &mut rng, c);
        assert!(rms <= RMS_BOUND, "{c:?}: relative RMS error {rms:.3e} above {RMS_BOUND:e}");
    }
}

/// `ops::conv3d` on f32 takes this kernel (same bits as `conv3d_tf32`) by default when it does not
/// refuse; where it does (Cin 3) the small-input kernel (`conv3d_small_cin`), and the portable kernel
/// (same bits as `conv3d_portable`) under `WANRT_CONV_F32=exact` (Cin 12) or `WANRT_CONV=portable`.
#[test]
fn dispatch_f32() {
    let Some(dev) = common::gpu("dispatch_f32") else { return };
    let mut rng = common::rng("dispatch_f32");
    let s = wanrt::runtime::settings::settings();
    let portable_forced = s.conv == "portable" || !s.conv_f32_tf32x3;
    for (cin, fast) in [(12, true), (3, false)] {
        let c = Case { prev: Some(2), pad_t: 0, residual: true, ..causal(1, 2, 7, 9, cin, 20) };
        let x = inputs(&c, &mut rng);
        let (xt, prev, w, bias, residual) = tensors(&dev, &c, &x);
        let (to, ho, wo) = c.out_dims();
        let a = rf::poisoned(&dev, &[c.b, to, ho, wo, c.cout], F32);
        let b = rf::poisoned(&dev, &[c.b, to, ho, wo, c.cout], F32);
        let args = ConvArgs::new(&xt, &w, c.geom(), &a).prev(prev.as_ref()).bias(bias.as_ref()).residual(residual.as_ref());
        ops::conv3d(&args).unwrap();
        let args_b = ConvArgs { out: &b, ..args };
        let refused = tf32::refusal(&args_b);
        let sm80 = dev.arch() >= Arch::new(8, 0);
        assert_eq!(refused.is_none(), fast && sm80, "Cin {cin}: {refused:?}");
        if refused.is_none() && !portable_forced {
            tf32::conv3d_tf32(&args_b).unwrap();
        } else if cin <= small_cin::MAX_CIN && s.conv != "portable" {
            small_cin::conv3d_small_cin(&args_b).unwrap();
        } else {
            conv3d_portable(&args_b).unwrap();
        }
        assert_eq!(a.to_bytes().unwrap(), b.to_bytes().unwrap(), "Cin {cin}: ops::conv3d took another kernel");
    }
}

/// Calls this path must refuse, each with a reason naming the cause; `conv3d_tf32` returns the same
/// error instead of launching.
#[test]
fn refusals_give_reasons() {
    let Some(dev) = common::gpu("refusals_give_reasons_tf32") else { return };
    let geom = Conv3dGeom { pad_t: 2, pad_h: (1, 1), pad_w: (1, 1), stride: (1, 1, 1) };
    let z = |shape: &[usize], dtype| Tensor::zeros(&dev, shape, dtype).unwrap();
    let expect = |what: &str, x: &Tensor, w: &Tensor, out: &Tensor, needle: &str| {
        let args = ConvArgs::new(x, w, geom, out);
        let e = tf32::refusal(&args).unwrap_or_else(|| panic!("{what}: not refused"));
        let msg = e.to_string();
        eprintln!("{what}: {msg}");
        assert!(msg.contains(needle), "{what}: reason {msg:?} does not say {needle:?}");
        let run = tf32::conv3d_tf32(&args).expect_err(what).to_string();
        assert_eq!(run, msg, "{what}: conv3d_tf32 and refusal disagree");
    };
    for cin in [3, 6, 10] {
        expect(&format!("Cin {cin}"), &z(&[1, 1, 4, 4, cin], F32), &z(&[8, 3, 3, 3, cin], F32), &z(&[1, 1, 4, 4, 8], F32), "multiple of 4");
    }
    let bf = DType::BF16;
    expect("bf16", &z(&[1, 1, 4, 4, 8], bf), &z(&[8, 3, 3, 3, 8], bf), &z(&[1, 1, 4, 4, 8], bf), "f32");
    // x starting 4 bytes into its buffer (f32-aligned, not 16-byte aligned).
    let base = z(&[2, 1, 4, 4, 8], F32);
    let x = Tensor::from_buffer(base.buffer().clone(), base.byte_offset() + 4, &[1, 1, 4, 4, 8], F32).unwrap();
    expect("x misaligned", &x, &z(&[8, 3, 3, 3, 8], F32), &z(&[1, 1, 4, 4, 8], F32), "16-byte aligned");
    // Aligned, Cin % 4 == 0: taken.
    assert!(tf32::refusal(&ConvArgs::new(&z(&[1, 1, 4, 4, 4], F32), &z(&[8, 3, 3, 3, 4], F32), geom, &z(&[1, 1, 4, 4, 8], F32))).is_none());
}

/// prev as a view into a longer cache buffer (frames 1..3 of 3, after a NaN frame the kernel must not
/// read) and out as a view into a buffer with a NaN frame after it (it must not write there).
#[test]
fn prev_and_out_as_views_f32() {
    let Some(dev) = common::gpu("prev_and_out_as_views_f32") else { return };
    let mut rng = common::rng("prev_and_out_as_views_f32");
    let c = Case { prev: Some(2), pad_t: 0, ..causal(1, 2, 7, 11, 20, 48) };
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
    tf32::conv3d_tf32(&ConvArgs::new(&xt, &w, c.geom(), &out).prev(Some(&prev)).bias(bias.as_ref())).unwrap();
    let all = out_buf.to_f32_vec().unwrap();
    let n = to * ho * wo * c.cout;
    assert!(all[n..].iter().all(|v| v.is_nan()), "wrote past the out view");
    let rows: Vec<usize> = (0..c.m()).collect();
    let (want, bound) = reference(&c, &x, &rows);
    rf::assert_within("tf32 prev/out views", &all[..n], &want, &bound);
}
