//! The tensor-core conv3d (`ops::conv::mma`, and the experimental `ops::conv::wgmma` on compute
//! capability 9.0) against a CPU f64 reference, on fresh random inputs with NaN-poisoned outputs, for
//! every instantiated tile and the default choice (and, where they take the call, the wgmma and
//! row-sharing wgmma tiles), bf16 and f16: the VAE's
//! conv kinds (3×3×3 causal with prev None / 1 / 2 frames, 2D 3×3 pad 1, stride-2 2D with (0,1,0,1)
//! padding, 1×1×1 shortcuts, 3×1×1 time convs with stride (2,1,1) or 2 causal frames), odd sizes (Cout
//! not a multiple of any N tile, M not a multiple of any M tile, widths not multiples of 8, Cin not a
//! multiple of the 32-channel K tile), bias and residual on and off, residual = out in place.
//!
//! Tolerance, per output element: |out − ref| ≤ u·|ref| + 2^-12·S + 2^-25, with u the dtype's unit
//! roundoff (2^-8 bf16, 2^-11 f16) and S = sqrt(Σ_k (x_k·w_k)²) + |bias| + |residual| the size of the
//! terms. The kernel's products of bf16/f16 values are exact in f32; the f32 sums (tensor cores
//! truncate, K/16 accumulator additions) stay below 2^-13·S for K ≤ 10,368 even when their errors add
//! up linearly; the one rounding to the output dtype adds at most u·|y|. A wrong, missing or extra term
//! is about S/sqrt(K) ≥ S/102: 40× the accumulation allowance. 2^-25 covers f16's subnormal spacing.

mod common;

use std::sync::Arc;

use rand::rngs::StdRng;
use rand::Rng;
use wanrt::runtime::ops::conv::mma::{self, Tile};
use wanrt::runtime::ops::conv::wgmma::{self, WgTile};
use wanrt::runtime::ops::conv::wgmma_rows::{self, RowTile};
use wanrt::runtime::ops::conv::{Conv3dGeom, ConvArgs};
use wanrt::{DType, Device, Tensor};

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

/// Host copies of the inputs, already rounded to the dtype.
struct Inputs {
    x: Vec<f32>,
    prev: Vec<f32>,
    w: Vec<f32>,
    bias: Vec<f32>,
    residual: Vec<f32>,
}

fn inputs(c: &Case, dtype: DType, rng: &mut StdRng) -> Inputs {
    let q = |v: Vec<f32>| common::quantize(&v, dtype);
    // Unit-variance activations and weights of variance 1/K: outputs of order 1 (f16's range).
    let wscale = 1.0 / (c.taps() * c.cin) as f32;
    Inputs {
        x: q(common::randn(rng, c.b * c.t * c.h * c.w * c.cin, 1.0)),
        prev: q(common::randn(rng, c.b * c.p() * c.h * c.w * c.cin, 1.0)),
        w: q(common::randn(rng, c.cout * c.taps() * c.cin, wscale.sqrt())),
        bias: if c.bias { q(common::randn(rng, c.cout, 0.5)) } else { Vec::new() },
        residual: if c.residual { q(common::randn(rng, c.m() * c.cout, 1.0)) } else { Vec::new() },
    }
}

/// The f64 reference of output rows `rows` (all channels each): (value, term scale S) per element.
fn reference(c: &Case, x: &Inputs, rows: &[usize]) -> (Vec<f64>, Vec<f64>) {
    let (to_n, ho_n, wo_n) = c.out_dims();
    let (kt, kh, kw) = c.k;
    let p = c.p();
    let mut want = Vec::with_capacity(rows.len() * c.cout);
    let mut scale = Vec::with_capacity(rows.len() * c.cout);
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
            let (mut sum, mut sq) = (0f64, 0f64);
            for (tap, px) in pix.iter().enumerate() {
                let Some(px) = px else { continue };
                let wrow = &x.w[(n * c.taps() + tap) * c.cin..][..c.cin];
                for (&a, &b) in px.iter().zip(wrow) {
                    let t = a as f64 * b as f64;
                    sum += t;
                    sq += t * t;
                }
            }
            let mut s = sq.sqrt();
            if c.bias {
                sum += x.bias[n] as f64;
                s += (x.bias[n] as f64).abs();
            }
            if c.residual {
                let r = x.residual[m * c.cout + n] as f64;
                sum += r;
                s += r.abs();
            }
            want.push(sum);
            scale.push(s);
        }
    }
    (want, scale)
}

/// The output rows checked: all of them when the f64 reference costs at most 3·10^8 multiply-adds, else
/// the first and last 64 rows (the first and last M tiles) and random ones up to that budget.
fn checked_rows(c: &Case, rng: &mut StdRng) -> Vec<usize> {
    let m = c.m();
    let budget = (300_000_000 / (c.cout * c.taps() * c.cin).max(1)).max(160);
    if m <= budget {
        return (0..m).collect();
    }
    let mut rows: Vec<usize> = (0..64).chain(m - 64..m).collect();
    rows.extend((0..budget - 128).map(|_| rng.random_range(0..m)));
    rows
}

fn tensors(dev: &Arc<Device>, c: &Case, x: &Inputs, dtype: DType) -> (Tensor, Option<Tensor>, Tensor, Option<Tensor>, Option<Tensor>) {
    let (to, ho, wo) = c.out_dims();
    let t = |shape: &[usize], v: &[f32]| Tensor::from_f32(dev, shape, dtype, v).unwrap();
    (
        t(&[c.b, c.t, c.h, c.w, c.cin], &x.x),
        c.prev.map(|p| t(&[c.b, p, c.h, c.w, c.cin], &x.prev)),
        t(&[c.cout, c.k.0, c.k.1, c.k.2, c.cin], &x.w),
        c.bias.then(|| t(&[c.cout], &x.bias)),
        c.residual.then(|| t(&[c.b, to, ho, wo, c.cout], &x.residual)),
    )
}

/// Which kernel a run takes.
#[derive(Clone, Copy)]
enum Path {
    Default,
    Mma(Tile),
    Wgmma(WgTile),
    Rows(RowTile),
}

/// Runs `c` through the default tile choice, every mma.sync tile and (on compute capability 9.0) every
/// wgmma tile, and checks each against the bound.
fn check_case(dev: &Arc<Device>, rng: &mut StdRng, c: Case, dtype: DType) {
    let x = inputs(&c, dtype, rng);
    let (xt, prev, w, bias, residual) = tensors(dev, &c, &x, dtype);
    let (to, ho, wo) = c.out_dims();
    let out = Tensor::empty(dev, &[c.b, to, ho, wo, c.cout], dtype).unwrap();
    let args = ConvArgs::new(&xt, &w, c.geom(), &out).prev(prev.as_ref()).bias(bias.as_ref()).residual(residual.as_ref());
    if let Some(e) = mma::refusal(&args) {
        panic!("{c:?} {dtype}: refused: {e}");
    }
    let rows = checked_rows(&c, rng);
    let (want, scale) = reference(&c, &x, &rows);
    let u = common::eps(dtype);
    let mut runs: Vec<(String, Path)> = vec![("default".into(), Path::Default)];
    runs.extend(mma::tiles().iter().map(|&t| (t.name(), Path::Mma(t))));
    // The experimental wgmma kernel wherever it runs (compute capability 9.0).
    if wgmma::refusal(&args).is_none() {
        runs.extend(wgmma::tiles().iter().map(|&t| (format!("wgmma-{}", t.name()), Path::Wgmma(t))));
    }
    // The row-sharing wgmma kernel for the 3-wide stride-1 convs it takes: its default and every tile
    // whose channel block divides Cin.
    if wgmma_rows::refusal(&args).is_none() {
        runs.push(("rows-default".into(), Path::Rows(wgmma_rows::default_row_tile(c.cout, c.cin))));
        let fits = |t: &&RowTile| c.cin.is_multiple_of(t.block_k as usize);
        runs.extend(wgmma_rows::tiles().iter().filter(fits).map(|&t| (format!("rows-{}", t.name()), Path::Rows(t))));
    }
    for (name, path) in runs {
        out.fill_nan().unwrap();
        let r = match path {
            Path::Default => mma::conv3d_mma(&args),
            Path::Mma(t) => mma::conv3d_mma_with_tile(&args, t),
            Path::Wgmma(t) => wgmma::conv3d_wgmma_with_tile(&args, t),
            Path::Rows(t) => wgmma_rows::conv3d_wgmma_rows_with_tile(&args, t),
        };
        r.unwrap_or_else(|e| panic!("{c:?} {dtype} tile {name}: {e}"));
        let got = out.to_f32_vec().unwrap();
        if let Some(i) = got.iter().position(|g| !g.is_finite()) {
            panic!("{c:?} {dtype} tile {name}: output element {i} is {} (not written or NaN)", got[i]);
        }
        let mut worst = (0usize, 0f64, 0f64);
        for (j, &m) in rows.iter().enumerate() {
            for n in 0..c.cout {
                let (g, wv, s) = (got[m * c.cout + n] as f64, want[j * c.cout + n], scale[j * c.cout + n]);
                let tol = u * wv.abs() + s / 4096.0 + 2f64.powi(-25);
                let err = (g - wv).abs();
                if err / tol > worst.1 {
                    worst = (j * c.cout + n, err / tol, err);
                }
            }
        }
        let (i, ratio, err) = worst;
        let (m, n) = (rows[i / c.cout], i % c.cout);
        eprintln!("{dtype} {name}: worst err {err:.3e} = {ratio:.3} of the tolerance ({} rows checked)", rows.len());
        assert!(
            ratio <= 1.0,
            "{c:?} {dtype} tile {name}: row {m} channel {n}: got {} want {} (|err| {err:.3e}, {ratio:.2}x the tolerance)",
            got[m * c.cout + n],
            want[i]
        );
    }
    // residual = out in place (the residual tensor is overwritten, so this runs last): the kernel reads
    // each residual element before the same thread writes it.
    if let Some(inplace) = residual.as_ref() {
        mma::conv3d_mma(&ConvArgs { residual: Some(inplace), out: inplace, ..args })
            .unwrap_or_else(|e| panic!("{c:?} {dtype} in place: {e}"));
        let got = inplace.to_f32_vec().unwrap();
        for (j, &m) in rows.iter().enumerate() {
            for n in 0..c.cout {
                let (g, wv, s) = (got[m * c.cout + n] as f64, want[j * c.cout + n], scale[j * c.cout + n]);
                let tol = u * wv.abs() + s / 4096.0 + 2f64.powi(-25);
                assert!((g - wv).abs() <= tol, "{c:?} {dtype} residual = out: row {m} channel {n}: got {g} want {wv}");
            }
        }
    }
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

/// The VAE's conv kinds at small odd sizes. Tile edges: Cout 40, 136, 200, 20, 3 against N tiles of
/// 64/96/128; M from 63 to 1,530 against M tiles of 64/128/256; widths 13, 7, 15, 11; Cin 16 and 40 leave
/// a partial 32-channel K block per tap.
fn vae_cases() -> Vec<Case> {
    let c = causal;
    vec![
        // Causal 3×3×3, the first chunk (no cache): 1 and 2 frames, 2 zero frames in front.
        c(1, 1, 9, 13, 32, 40),
        Case { residual: true, ..c(2, 2, 7, 9, 16, 136) },
        // With a cache of 1 frame (pad_t 1) and 2 frames (pad_t 0), as the chunked loop runs them.
        Case { prev: Some(1), pad_t: 1, ..c(1, 2, 5, 7, 40, 24) },
        Case { prev: Some(1), pad_t: 1, bias: false, ..c(1, 1, 6, 13, 32, 20) },
        Case { prev: Some(2), pad_t: 0, bias: false, residual: true, ..c(1, 4, 11, 10, 96, 200) },
        Case { prev: Some(2), pad_t: 0, ..c(2, 1, 8, 11, 64, 96) },
        // conv_out of the decoder: Cout 3 (element stores), residual path of a non-multiple of 8.
        Case { prev: Some(2), pad_t: 0, residual: true, ..c(1, 2, 6, 9, 96, 3) },
        // 2D 3×3, padding 1, per frame (kt = 1).
        Case { k: (1, 3, 3), pad_t: 0, residual: true, ..c(2, 3, 17, 15, 64, 96) },
        // The downsamplers' stride-2 2D conv after ZeroPad2d(0, 1, 0, 1): even and odd sizes.
        Case { k: (1, 3, 3), pad_t: 0, pad_h: (0, 1), pad_w: (0, 1), stride: (1, 2, 2), ..c(1, 2, 18, 26, 32, 48) },
        Case { k: (1, 3, 3), pad_t: 0, pad_h: (0, 1), pad_w: (0, 1), stride: (1, 2, 2), bias: false, ..c(2, 1, 17, 15, 96, 96) },
        // 1×1×1 shortcut (and quant convs), with and without bias/residual.
        Case { k: (1, 1, 1), pad_t: 0, pad_h: (0, 0), pad_w: (0, 0), residual: true, ..c(1, 4, 6, 11, 96, 192) },
        Case { k: (1, 1, 1), pad_t: 0, pad_h: (0, 0), pad_w: (0, 0), bias: false, ..c(1, 1, 7, 9, 32, 32) },
        // downsample3d's time_conv: (3,1,1), stride (2,1,1), no padding, over [last cached frame ; 4].
        Case { k: (3, 1, 1), prev: Some(1), pad_t: 0, pad_h: (0, 0), pad_w: (0, 0), stride: (2, 1, 1), ..c(1, 4, 6, 10, 64, 64) },
        Case { k: (3, 1, 1), prev: None, pad_t: 0, pad_h: (0, 0), pad_w: (0, 0), stride: (2, 1, 1), ..c(2, 3, 5, 7, 32, 40) },
        // upsample3d's time_conv: (3,1,1), Cout = 2·Cin, 2 causal zero frames or a 2-frame cache.
        Case { k: (3, 1, 1), pad_h: (0, 0), pad_w: (0, 0), ..c(1, 1, 6, 13, 32, 64) },
        Case { k: (3, 1, 1), prev: Some(2), pad_t: 0, pad_h: (0, 0), pad_w: (0, 0), residual: true, ..c(1, 2, 5, 9, 48, 96) },
        // Shapes for the row-sharing kernel's edges: width 1 (3 padded positions a row), one row, Cin
        // 160 (64-channel blocks do not divide it: 32-channel ones), Cout 130 (a partial N tile of every
        // width), 1 frame after a 2-frame cache, height stride 2 (the kernel takes any h/t stride).
        Case { residual: true, ..c(2, 3, 5, 1, 64, 40) },
        Case { prev: Some(2), pad_t: 0, ..c(1, 1, 1, 21, 160, 130) },
        Case { k: (1, 3, 3), pad_t: 0, stride: (1, 2, 1), ..c(1, 2, 9, 19, 96, 72) },
    ]
}

fn sweep(dtype: DType, test: &str) {
    let Some(dev) = common::gpu(test) else { return };
    let mut rng = common::rng(test);
    for c in vae_cases() {
        eprintln!("{c:?}");
        check_case(&dev, &mut rng, c, dtype);
    }
}

#[test]
fn vae_conv_kinds_bf16() {
    sweep(DType::BF16, "vae_conv_kinds_bf16");
}

#[test]
fn vae_conv_kinds_f16() {
    sweep(DType::F16, "vae_conv_kinds_f16");
}

/// The widest layers at a VAE-like size: 384 → 384 channels, K = 10,368, a 2-frame cache, M = 3,120
/// (not a multiple of 64 or 128), rows sampled; 96 → 96 at a wider frame; 192 → 192 after a 1-frame cache.
#[test]
fn wide_channels() {
    let Some(dev) = common::gpu("wide_channels") else { return };
    let mut rng = common::rng("wide_channels");
    for dtype in [DType::BF16, DType::F16] {
        let c = Case { prev: Some(2), pad_t: 0, residual: true, ..causal(1, 2, 30, 52, 384, 384) };
        check_case(&dev, &mut rng, c, dtype);
        check_case(&dev, &mut rng, causal(1, 1, 24, 104, 96, 96), dtype);
        check_case(&dev, &mut rng, Case { prev: Some(1), pad_t: 1, ..causal(1, 2, 12, 40, 192, 192) }, dtype);
    }
}

/// Calls the fast path must refuse, each with a reason naming the cause; `conv3d_mma` returns the same
/// error instead of launching.
#[test]
fn refusals_give_reasons() {
    let Some(dev) = common::gpu("refusals_give_reasons") else { return };
    let geom = Conv3dGeom { pad_t: 2, pad_h: (1, 1), pad_w: (1, 1), stride: (1, 1, 1) };
    let z = |shape: &[usize], dtype| Tensor::zeros(&dev, shape, dtype).unwrap();
    let expect = |what: &str, x: &Tensor, w: &Tensor, out: &Tensor, needle: &str| {
        let args = ConvArgs::new(x, w, geom, out);
        let e = mma::refusal(&args).unwrap_or_else(|| panic!("{what}: not refused"));
        let msg = e.to_string();
        eprintln!("{what}: {msg}");
        assert!(msg.contains(needle), "{what}: reason {msg:?} does not say {needle:?}");
        let run = mma::conv3d_mma(&args).expect_err(what).to_string();
        assert_eq!(run, msg, "{what}: conv3d_mma and refusal disagree");
    };
    for cin in [3, 12, 20] {
        let bf = DType::BF16;
        expect(&format!("Cin {cin}"), &z(&[1, 1, 4, 4, cin], bf), &z(&[8, 3, 3, 3, cin], bf), &z(&[1, 1, 4, 4, 8], bf), "multiple of 8");
    }
    let f = DType::F32;
    expect("f32", &z(&[1, 1, 4, 4, 8], f), &z(&[8, 3, 3, 3, 8], f), &z(&[1, 1, 4, 4, 8], f), "bf16 or f16");
    // x starting 2 bytes into its buffer.
    let bf = DType::BF16;
    let base = z(&[1 + 1, 1, 4, 4, 8], bf);
    let x = Tensor::from_buffer(base.buffer().clone(), base.byte_offset() + 2, &[1, 1, 4, 4, 8], bf).unwrap();
    expect("x misaligned", &x, &z(&[8, 3, 3, 3, 8], bf), &z(&[1, 1, 4, 4, 8], bf), "16-byte aligned");
    let wbase = z(&[9, 3, 3, 3, 8], bf);
    let w = Tensor::from_buffer(wbase.buffer().clone(), wbase.byte_offset() + 8, &[8, 3, 3, 3, 8], bf).unwrap();
    expect("w misaligned", &z(&[1, 1, 4, 4, 8], bf), &w, &z(&[1, 1, 4, 4, 8], bf), "16-byte aligned");
    // Aligned, Cin % 8 == 0: taken.
    assert!(mma::refusal(&ConvArgs::new(&z(&[1, 1, 4, 4, 8], bf), &z(&[8, 3, 3, 3, 8], bf), geom, &z(&[1, 1, 4, 4, 8], bf))).is_none());
}

/// Bad arguments are errors naming the argument (no panic, nothing launched).
#[test]
fn bad_arguments_are_errors() {
    let Some(dev) = common::gpu("bad_arguments_are_errors") else { return };
    let bf = DType::BF16;
    let z = |shape: &[usize]| Tensor::zeros(&dev, shape, bf).unwrap();
    let geom = Conv3dGeom { pad_t: 2, pad_h: (1, 1), pad_w: (1, 1), stride: (1, 1, 1) };
    let (x, w, out) = (z(&[1, 2, 5, 6, 16]), z(&[24, 3, 3, 3, 16]), z(&[1, 2, 5, 6, 24]));
    let ok = ConvArgs::new(&x, &w, geom, &out);
    mma::conv3d_mma(&ok).unwrap();
    let err = |r: wanrt::Result<()>| r.expect_err("must be an error").to_string();
    let names = |msg: String, name: &str| assert!(msg.contains(name), "{msg:?} does not name {name:?}");
    names(err(mma::conv3d_mma(&ConvArgs { out: &z(&[1, 2, 5, 6, 16]), ..ok })), "out");
    names(err(mma::conv3d_mma(&ConvArgs { out: &z(&[1, 1, 5, 6, 24]), ..ok })), "out");
    names(err(mma::conv3d_mma(&ConvArgs { w: &z(&[24, 3, 3, 3, 8]), ..ok })), "w");
    names(err(mma::conv3d_mma(&ok.prev(Some(&z(&[1, 2, 4, 6, 16]))))), "prev");
    names(err(mma::conv3d_mma(&ok.bias(Some(&z(&[16]))))), "bias");
    names(err(mma::conv3d_mma(&ok.residual(Some(&z(&[1, 2, 5, 6, 16]))))), "residual");
    let f16 = Tensor::zeros(&dev, &[24], DType::F16).unwrap();
    names(err(mma::conv3d_mma(&ok.bias(Some(&f16)))), "bias");
    let g0 = Conv3dGeom { stride: (1, 0, 1), ..geom };
    names(err(mma::conv3d_mma(&ConvArgs { geom: g0, ..ok })), "stride");
    // Too few frames for the kernel: no causal padding, 2 frames, kt = 3.
    let g1 = Conv3dGeom { pad_t: 0, ..geom };
    names(err(mma::conv3d_mma(&ConvArgs { geom: g1, ..ok })), "time");
    // out aliasing x (a 1×1×1 conv with Cout = Cin has out's shape equal to x's).
    let w1 = z(&[16, 1, 1, 1, 16]);
    let g2 = Conv3dGeom { pad_t: 0, pad_h: (0, 0), pad_w: (0, 0), stride: (1, 1, 1) };
    names(err(mma::conv3d_mma(&ConvArgs::new(&x, &w1, g2, &x))), "overlaps");
    // An empty output (no batch) is a no-op.
    let e = |shape: &[usize]| Tensor::empty(&dev, shape, bf).unwrap();
    mma::conv3d_mma(&ConvArgs::new(&e(&[0, 2, 5, 6, 16]), &w, geom, &e(&[0, 2, 5, 6, 24]))).unwrap();
}

/// prev as a view into a longer cache buffer (frames 1..3 of 3, after a NaN frame the kernel must not
/// read) and out as a view into a buffer with a NaN frame after it (it must not write there).
#[test]
fn prev_and_out_as_views() {
    let Some(dev) = common::gpu("prev_and_out_as_views") else { return };
    let mut rng = common::rng("prev_and_out_as_views");
    for dtype in [DType::BF16, DType::F16] {
        let c = Case { prev: Some(2), pad_t: 0, ..causal(1, 2, 7, 11, 32, 48) };
        let x = inputs(&c, dtype, &mut rng);
        let (xt, _, w, bias, _) = tensors(&dev, &c, &x, dtype);
        let frame = c.h * c.w * c.cin;
        let mut cache = vec![f32::NAN; frame];
        cache.extend_from_slice(&x.prev);
        let cache = Tensor::from_f32(&dev, &[1, 3, c.h, c.w, c.cin], dtype, &cache).unwrap();
        let prev = cache.narrow(1, 1, 2).unwrap();
        let (to, ho, wo) = c.out_dims();
        let out_buf = Tensor::empty(&dev, &[1, to + 1, ho, wo, c.cout], dtype).unwrap();
        out_buf.fill_nan().unwrap();
        let out = out_buf.narrow(1, 0, to).unwrap();
        mma::conv3d_mma(&ConvArgs::new(&xt, &w, c.geom(), &out).prev(Some(&prev)).bias(bias.as_ref())).unwrap();
        let all = out_buf.to_f32_vec().unwrap();
        let n = to * ho * wo * c.cout;
        assert!(all[n..].iter().all(|v| v.is_nan()), "{dtype}: wrote past the out view");
        let rows: Vec<usize> = (0..c.m()).collect();
        let (want, scale) = reference(&c, &x, &rows);
        let u = common::eps(dtype);
        for (i, (&g, (&wv, &s))) in all[..n].iter().zip(want.iter().zip(&scale)).enumerate() {
            let tol = u * wv.abs() + s / 4096.0 + 2f64.powi(-25);
            assert!((g as f64 - wv).abs() <= tol, "{dtype}: element {i}: got {g} want {wv}");
        }
    }
}

/// The row-sharing kernel with WanRMS_norm (+ SiLU) in its epilogue (`wgmma_rows::conv3d_wgmma_rows_norm`,
/// diffusers `WanResidualBlock`'s conv1 → norm2 → SiLU) against the f64 reference of conv, bias, norm
/// and SiLU, and against the unfused path (the row conv, then `ops::l2_norm` in place), on compute
/// capability 9.0: n96 with 32- and 64-channel blocks, n192, with and without SiLU, odd widths, a cache;
/// the default tile, then every m256 tile that holds the channels (its norm runs per 128-row pass).
/// Bound: relative RMS error at most u (2^-8 bf16, 2^-11 f16): the output's one rounding alone gives
/// about 0.58u, the f32 conv sums and norm far less; a wrong row norm or channel is off by O(1). The
/// unfused path rounds the conv output once more before the norm: within u of the fused one as well.
/// `ops::conv3d_norm` gives the fused bits exactly under `WANRT_UNVERIFIED=1`, the unfused ones without.
#[test]
fn fused_norm() {
    let Some(dev) = common::gpu("fused_norm") else { return };
    let mut rng = common::rng("fused_norm");
    let cases = [
        Case { prev: Some(2), pad_t: 0, ..causal(1, 2, 9, 13, 96, 96) },
        Case { prev: Some(1), pad_t: 1, ..causal(1, 1, 6, 11, 192, 192) },
        Case { prev: None, ..causal(1, 2, 5, 7, 192, 96) },
    ];
    for dtype in [DType::BF16, DType::F16] {
        for (i, c) in cases.iter().enumerate() {
            let silu = i != 1;
            let x = inputs(c, dtype, &mut rng);
            let (xt, prev, w, bias, _) = tensors(&dev, c, &x, dtype);
            let (to, ho, wo) = c.out_dims();
            let out = Tensor::empty(&dev, &[c.b, to, ho, wo, c.cout], dtype).unwrap();
            let args = ConvArgs::new(&xt, &w, c.geom(), &out).prev(prev.as_ref()).bias(bias.as_ref());
            let gamma_v = common::quantize(&common::randn(&mut rng, c.cout, 0.5).iter().map(|g| 1.0 + g).collect::<Vec<_>>(), dtype);
            let gamma = Tensor::from_f32(&dev, &[c.cout], dtype, &gamma_v).unwrap();
            if let Some(e) = wgmma_rows::norm_refusal(&args, &gamma) {
                eprintln!("{c:?} {dtype}: fused norm refused ({e}); skipped");
                continue;
            }
            // The f64 reference: conv + bias per row, then the norm and SiLU.
            let rows: Vec<usize> = (0..c.m()).collect();
            let (conv, _) = reference(c, &x, &rows);
            let scale = (c.cout as f64).sqrt();
            let mut want = vec![0f64; conv.len()];
            for (r, y) in conv.chunks(c.cout).enumerate() {
                let inv = 1.0 / y.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
                for (n, &v) in y.iter().enumerate() {
                    let z = v * inv * scale * gamma_v[n] as f64;
                    want[r * c.cout + n] = if silu { z / (1.0 + (-z).exp()) } else { z };
                }
            }
            let rel_rms = |got: &[f32], want: &[f64]| {
                let (mut e, mut s) = (0f64, 0f64);
                for (&g, &w) in got.iter().zip(want) {
                    e += (g as f64 - w).powi(2);
                    s += w * w;
                }
                (e / s.max(1e-300)).sqrt()
            };
            let u = common::eps(dtype);
            out.fill_nan().unwrap();
            wgmma_rows::conv3d_wgmma_rows_norm(&args, &gamma, silu).unwrap();
            let fused = out.to_f32_vec().unwrap();
            assert!(fused.iter().all(|v| v.is_finite()), "{c:?} {dtype}: fused output not all written");
            let e_fused = rel_rms(&fused, &want);
            // The unfused path: the row conv, then the norm in place.
            out.fill_nan().unwrap();
            wgmma_rows::conv3d_wgmma_rows(&args).unwrap();
            wanrt::runtime::ops::l2_norm(&out, &gamma, None, silu, &out).unwrap();
            let unfused = out.to_f32_vec().unwrap();
            let e_unfused = rel_rms(&unfused, &want);
            let fused64: Vec<f64> = fused.iter().map(|&v| v as f64).collect();
            let e_pair = rel_rms(&unfused, &fused64);
            eprintln!("{c:?} {dtype} silu {silu}: rel RMS fused {e_fused:.2e}, unfused {e_unfused:.2e}, between {e_pair:.2e} (u {u:.2e})");
            assert!(e_fused <= u, "{c:?} {dtype}: fused rel RMS {e_fused:.3e} above {u:e}");
            let m256 = |t: &&RowTile| t.block_m == 256 && !t.persistent && c.cin.is_multiple_of(t.block_k as usize) && c.cout <= t.block_n as usize;
            for &tile in wgmma_rows::tiles().iter().filter(m256) {
                out.fill_nan().unwrap();
                wgmma_rows::conv3d_wgmma_rows_norm_with_tile(&args, &gamma, silu, tile).unwrap();
                let got = out.to_f32_vec().unwrap();
                assert!(got.iter().all(|v| v.is_finite()), "{c:?} {dtype} {}: fused output not all written", tile.name());
                let e = rel_rms(&got, &want);
                eprintln!("{c:?} {dtype} silu {silu} rows-{}: rel RMS fused {e:.2e}", tile.name());
                assert!(e <= u, "{c:?} {dtype} rows-{}: fused rel RMS {e:.3e} above {u:e}", tile.name());
            }
            assert!(e_unfused <= u && e_pair <= u, "{c:?} {dtype}: unfused {e_unfused:.3e}, fused vs unfused {e_pair:.3e}");
            // A persistent tile has no room for the norm's sums: refused, its output untouched.
            for &tile in wgmma_rows::tiles().iter().filter(|t| t.persistent) {
                out.fill_nan().unwrap();
                let e = wgmma_rows::conv3d_wgmma_rows_norm_with_tile(&args, &gamma, silu, tile).expect_err("a persistent tile took the fused norm");
                assert!(e.to_string().contains("no room for the fused norm"), "{}: {e}", tile.name());
                assert!(out.to_f32_vec().unwrap().iter().all(|v| v.is_nan()), "{}: a refused call wrote its output", tile.name());
            }
            // The dispatcher's choice, bit for bit.
            out.fill_nan().unwrap();
            wanrt::runtime::ops::conv3d_norm(&args, &gamma, silu).unwrap();
            let via_op = out.to_bytes().unwrap();
            let fused_path = wanrt::runtime::settings::settings().unverified && wanrt::runtime::settings::settings().conv == "auto";
            let expect = if fused_path { &fused } else { &unfused };
            let expect_bytes = Tensor::from_f32(&dev, out.shape(), dtype, expect).unwrap().to_bytes().unwrap();
            assert_eq!(via_op, expect_bytes, "{c:?} {dtype}: ops::conv3d_norm took neither the fused nor the unfused path");
        }
    }
}
