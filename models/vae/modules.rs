//! The VAE's building blocks, named as in diffusers' autoencoder_kl_wan.py, on channels-last
//! [1, T, H, W, C] activations. Each block is one offload unit; each has a `plan` (sizes, caches)
//! beside its `forward`, walking the same steps.
//!
//! Conv weights are declared under their checkpoint shape ([Cout, Cin, kt, kh, kw], or [Cout, Cin,
//! kh, kw] for Conv2d) so the checkpoint check sees the file's shapes, but their bytes are uploaded
//! channels-last ([Cout, kt, kh, kw, Cin], see `load::ChannelsLastSource`); the forward views them so.

use wanrt_runtime::offload::{Param, UnitDecl, UnitGuard, UnitId, VarBuilder};
use wanrt_runtime::ops::{self, Conv3dGeom, ConvArgs};
use wanrt_runtime::{Result, Tensor};

use super::exec::{score_rows, Act, Ctx, Walk};

/// `WanCausalConv3d` (and the resamplers' `nn.Conv2d`, kt = 1): weight, bias, kernel, padding
/// (pt, ph, pw) as declared upstream (time gets 2·pt zero frames in front, none behind), stride.
#[derive(Clone, Copy, Debug)]
pub struct WanCausalConv3d {
    pub weight: Param,
    pub bias: Param,
    pub cin: usize,
    pub cout: usize,
    pub k: (usize, usize, usize),
    pub padding: (usize, usize, usize),
    pub stride: (usize, usize, usize),
}

impl WanCausalConv3d {
    /// A Conv3d `weight` [cout, cin, kt, kh, kw] and `bias` `[cout]`.
    pub fn declare(u: &mut UnitDecl<'_>, vb: &VarBuilder, cin: usize, cout: usize, k: (usize, usize, usize), padding: (usize, usize, usize)) -> Self {
        let weight = u.param(vb, "weight", &[cout, cin, k.0, k.1, k.2]);
        let bias = u.param(vb, "bias", &[cout]);
        WanCausalConv3d { weight, bias, cin, cout, k, padding, stride: (1, 1, 1) }
    }

    /// An `nn.Conv2d` `weight` [cout, cin, kh, kw] applied per frame (kt = 1).
    pub fn declare_2d(u: &mut UnitDecl<'_>, vb: &VarBuilder, cin: usize, cout: usize, k: usize, padding: usize, stride: usize) -> Self {
        let weight = u.param(vb, "weight", &[cout, cin, k, k]);
        let bias = u.param(vb, "bias", &[cout]);
        WanCausalConv3d { weight, bias, cin, cout, k: (1, k, k), padding: (0, padding, padding), stride: (1, stride, stride) }
    }

    /// Output (T, H, W) for an input of (t, h, w) after `prev` cached frames.
    pub fn out_dims(&self, t: usize, h: usize, w: usize, geom: &Conv3dGeom, prev: usize) -> (usize, usize, usize) {
        let (kt, kh, kw) = self.k;
        let o = |n: usize, k: usize, s: usize| (n.saturating_sub(k)) / s + 1;
        (
            o(geom.pad_t + prev + t, kt, geom.stride.0),
            o(h + geom.pad_h.0 + geom.pad_h.1, kh, geom.stride.1),
            o(w + geom.pad_w.0 + geom.pad_w.1, kw, geom.stride.2),
        )
    }

    /// The padding upstream applies with `cached` frames in front (`padding[4] -= cache_x.shape[2]`).
    pub fn geom(&self, cached: usize) -> Conv3dGeom {
        let (pt, ph, pw) = self.padding;
        Conv3dGeom { pad_t: (2 * pt).saturating_sub(cached), pad_h: (ph, ph), pad_w: (pw, pw), stride: self.stride }
    }

    /// `out = conv([prev ; x]) + bias [+ residual]` with `geom`.
    pub fn run(&self, g: &UnitGuard<'_>, x: &Tensor, prev: Option<&Tensor>, residual: Option<&Tensor>, geom: &Conv3dGeom, out: &Tensor) -> Result<()> {
        let (kt, kh, kw) = self.k;
        let w = g.get(self.weight)?.reshape(&[self.cout, kt, kh, kw, self.cin])?;
        ops::conv3d(&ConvArgs { x, prev, w: &w, bias: Some(g.get(self.bias)?), residual, geom: *geom, out })
    }

    /// Without a cache: a new pool activation.
    pub fn forward<'p>(&self, ctx: &Ctx<'p, '_, '_, '_>, g: &UnitGuard<'_>, x: &Tensor, residual: Option<&Tensor>) -> Result<Act<'p>> {
        let geom = self.geom(0);
        let (t, h, w) = self.out_dims(x.dim(1), x.dim(2), x.dim(3), &geom, 0);
        let out = ctx.pool.take(t, h, w, self.cout)?;
        self.run(g, x, None, residual, &geom, &out.t)?;
        Ok(out)
    }

    /// With the next feature cache (diffusers' `conv(x, feat_cache[idx])`, then
    /// `feat_cache[idx] = x[:, :, -CACHE_T:]` with the previous last frame in front of a 1-frame chunk).
    pub fn forward_cached<'p>(&self, ctx: &Ctx<'p, '_, '_, '_>, g: &UnitGuard<'_>, x: &Tensor, residual: Option<&Tensor>) -> Result<Act<'p>> {
        let cache = ctx.next_cache()?;
        let prev = cache.frames()?;
        let geom = self.geom(cache.len());
        let (t, h, w) = self.out_dims(x.dim(1), x.dim(2), x.dim(3), &geom, cache.len());
        let out = ctx.pool.take(t, h, w, self.cout)?;
        self.run(g, x, prev.as_ref(), residual, &geom, &out.t)?;
        cache.push(x)?;
        Ok(out)
    }

    /// [`Self::forward_cached`] followed by `norm` (and SiLU when `silu`) on its output, in one launch
    /// where `ops::conv3d_norm` can fuse them (diffusers `WanResidualBlock`: `conv1`, then `norm2`).
    pub fn forward_cached_norm<'p>(&self, ctx: &Ctx<'p, '_, '_, '_>, g: &UnitGuard<'_>, x: &Tensor, norm: &WanRmsNorm, silu: bool) -> Result<Act<'p>> {
        let cache = ctx.next_cache()?;
        let prev = cache.frames()?;
        let geom = self.geom(cache.len());
        let (t, h, w) = self.out_dims(x.dim(1), x.dim(2), x.dim(3), &geom, cache.len());
        let out = ctx.pool.take(t, h, w, self.cout)?;
        let (kt, kh, kw) = self.k;
        let wt = g.get(self.weight)?.reshape(&[self.cout, kt, kh, kw, self.cin])?;
        let gamma = g.get(norm.gamma)?.reshape(&[norm.dim])?;
        let args = ConvArgs { x, prev: prev.as_ref(), w: &wt, bias: Some(g.get(self.bias)?), residual: None, geom, out: &out.t };
        ops::conv3d_norm(&args, &gamma, silu)?;
        cache.push(x)?;
        Ok(out)
    }

    /// Plan of [`Self::forward_cached`] for a causal k3 (or time_conv) conv: output frames equal
    /// input frames; the cache holds 2 frames of the input.
    pub fn plan_cached(&self, walk: &mut Walk) {
        walk.cache(super::exec::CACHE_T, self.cin);
        self.plan_flops(walk, walk.t * walk.h * walk.w);
        walk.set(walk.t, walk.h, walk.w, self.cout);
    }

    /// Counts this conv's FLOPs for `positions` output positions.
    pub fn plan_flops(&self, walk: &mut Walk, positions: usize) {
        walk.conv(positions, self.k.0 * self.k.1 * self.k.2, self.cin, self.cout);
    }
}

/// `WanRMS_norm`'s `gamma` ([C, 1, 1, 1], or [C, 1, 1] for the attention's `images=True`); no bias
/// (upstream's `bias=False`).
#[derive(Clone, Copy, Debug)]
pub struct WanRmsNorm {
    pub gamma: Param,
    pub dim: usize,
}

impl WanRmsNorm {
    pub fn declare(u: &mut UnitDecl<'_>, vb: &VarBuilder, dim: usize, images: bool) -> Self {
        let shape: &[usize] = if images { &[dim, 1, 1] } else { &[dim, 1, 1, 1] };
        WanRmsNorm { gamma: u.param(vb, "gamma", shape), dim }
    }

    /// `out = normalize(x) · sqrt(C) · gamma`, then SiLU when `silu`.
    pub fn run(&self, g: &UnitGuard<'_>, x: &Tensor, silu: bool, out: &Tensor) -> Result<()> {
        ops::l2_norm(x, &g.get(self.gamma)?.reshape(&[self.dim])?, None, silu, out)
    }
}

/// `WanResidualBlock(in_dim, out_dim)`: shortcut(x) + conv2(silu(norm2(conv1(silu(norm1(x)))))).
pub struct WanResidualBlock {
    pub unit: UnitId,
    pub norm1: WanRmsNorm,
    pub conv1: WanCausalConv3d,
    pub norm2: WanRmsNorm,
    pub conv2: WanCausalConv3d,
    pub conv_shortcut: Option<WanCausalConv3d>,
}

impl WanResidualBlock {
    pub fn new(vb: &VarBuilder, cin: usize, cout: usize) -> Self {
        vb.unit(|u| WanResidualBlock {
            unit: u.id(),
            norm1: WanRmsNorm::declare(u, &vb.pp("norm1"), cin, false),
            conv1: WanCausalConv3d::declare(u, &vb.pp("conv1"), cin, cout, (3, 3, 3), (1, 1, 1)),
            norm2: WanRmsNorm::declare(u, &vb.pp("norm2"), cout, false),
            conv2: WanCausalConv3d::declare(u, &vb.pp("conv2"), cout, cout, (3, 3, 3), (1, 1, 1)),
            conv_shortcut: (cin != cout).then(|| WanCausalConv3d::declare(u, &vb.pp("conv_shortcut"), cin, cout, (1, 1, 1), (0, 0, 0))),
        })
    }

    pub fn plan(&self, walk: &mut Walk) {
        let (t, h, w) = (walk.t, walk.h, walk.w);
        if let Some(sc) = &self.conv_shortcut {
            walk.take(t, h, w, self.conv1.cout);
            sc.plan_flops(walk, t * h * w);
        }
        walk.take(t, h, w, self.conv1.cin); // norm1 output
        self.conv1.plan_cached(walk);
        self.conv2.plan_cached(walk);
    }

    pub fn forward<'p>(&self, ctx: &Ctx<'p, '_, '_, '_>, x: Act<'p>) -> Result<Act<'p>> {
        let g = ctx.fw.unit(self.unit)?;
        let (t, h, w, c) = x.dims();
        let shortcut = self.conv_shortcut.map(|sc| sc.forward(ctx, &g, &x.t, None)).transpose()?;
        let a = ctx.pool.take(t, h, w, c)?;
        self.norm1.run(&g, &x.t, true, &a.t)?;
        // With a shortcut the input is not read past norm1: freed here, the block holds at most
        // MODULE_SLOTS activations (shortcut, normed input, conv1's output).
        let residual = match shortcut {
            Some(s) => {
                drop(x);
                s
            }
            None => x,
        };
        let b = self.conv1.forward_cached_norm(ctx, &g, &a.t, &self.norm2, true)?;
        drop(a);
        // Dropout is the identity at inference.
        self.conv2.forward_cached(ctx, &g, &b.t, Some(&residual.t))
    }
}

/// `WanAttentionBlock(dim)`: per frame, single-head attention over the H·W pixels of
/// `RMS_norm(x)` (head dim C, scale 1/√C), projected and added to `x`. Computed unfused, a block of
/// query rows at a time (the fused attention kernels take head dims 64/80/128, C is 384): cuBLASLt
/// GEMMs with f32 scores and the softmax kernel; f32 throughout in f32, tensor cores on bf16/f16
/// q, k, v and probabilities otherwise.
pub struct WanAttentionBlock {
    pub unit: UnitId,
    pub norm: WanRmsNorm,
    /// `to_qkv`: Conv2d(C → 3C, 1×1) weight [3C, C, 1, 1] and bias `[3C]`.
    pub to_qkv: (Param, Param),
    /// `proj`: Conv2d(C → C, 1×1).
    pub proj: (Param, Param),
    pub dim: usize,
}

impl WanAttentionBlock {
    pub fn new(vb: &VarBuilder, dim: usize) -> Self {
        vb.unit(|u| {
            let (q, p) = (vb.pp("to_qkv"), vb.pp("proj"));
            WanAttentionBlock {
                unit: u.id(),
                norm: WanRmsNorm::declare(u, &vb.pp("norm"), dim, true),
                to_qkv: (u.param(&q, "weight", &[3 * dim, dim, 1, 1]), u.param(&q, "bias", &[3 * dim])),
                proj: (u.param(&p, "weight", &[dim, dim, 1, 1]), u.param(&p, "bias", &[dim])),
                dim,
            }
        })
    }

    pub fn plan(&self, walk: &mut Walk) {
        let (t, h, w, c) = (walk.t, walk.h, walk.w, walk.c);
        walk.take(t, h, w, c);
        walk.take(t, h, w, c);
        let hw = h * w;
        walk.attn = Some(walk.attn.map_or((hw, c), |(a, b)| (a.max(hw), b.max(c))));
        // to_qkv and proj (4 C×C GEMMs per token), then q·kᵀ and p·v (2 · hw · C per token).
        walk.flops += t as f64 * (8.0 * (hw * c * c) as f64 + 4.0 * (hw * hw) as f64 * c as f64);
    }

    pub fn forward<'p>(&self, ctx: &Ctx<'p, '_, '_, '_>, x: Act<'p>) -> Result<Act<'p>> {
        let g = ctx.fw.unit(self.unit)?;
        let (t, h, w, c) = x.dims();
        let s = ctx.attn.ok_or_else(|| wanrt_runtime::Error::invalid("vae: attention scratch was not planned"))?;
        let hw = h * w;
        let n = ctx.pool.take(t, h, w, c)?;
        self.norm.run(&g, &x.t, false, &n.t)?;
        let out = ctx.pool.take(t, h, w, c)?;
        let wqkv = g.get(self.to_qkv.0)?.reshape(&[3, c, c])?;
        let bqkv = g.get(self.to_qkv.1)?.reshape(&[3, c])?;
        let wproj = g.get(self.proj.0)?.reshape(&[c, c])?;
        let bproj = g.get(self.proj.1)?;
        let prefix = |buf: &Tensor, shape: &[usize]| -> Result<Tensor> { buf.narrow(0, 0, shape.iter().product())?.reshape(shape) };
        let qkv = prefix(&s.qkv, &[3, hw, c])?;
        let o = prefix(&s.o, &[hw, c])?;
        let scale = 1.0 / (c as f32).sqrt();
        let rows = score_rows(hw);
        for f in 0..t {
            let tokens = n.t.narrow(1, f, 1)?.reshape(&[hw, c])?;
            ops::linear_stack(&tokens, &wqkv, Some(&bqkv), &qkv)?;
            let part = |i: usize| qkv.narrow(0, i, 1)?.reshape(&[hw, c]);
            let (q, k, v) = (part(0)?, part(1)?, part(2)?);
            let mut r0 = 0;
            while r0 < hw {
                let r = rows.min(hw - r0);
                let sc = prefix(&s.scores, &[r, hw])?;
                match &s.p {
                    // f32: f32 GEMMs, the scores normalized in place.
                    None => {
                        ops::gemm(&q.narrow(0, r0, r)?, &k, true, scale, false, &sc)?;
                        ops::softmax(&sc, &sc)?;
                        ops::gemm(&sc, &v, false, 1.0, false, &o.narrow(0, r0, r)?)?;
                    }
                    // bf16/f16: tensor-core GEMMs with f32 accumulation; scores in f32, the
                    // probabilities rounded once to the compute dtype (one head: [1, N, 1, C]).
                    Some(p) => {
                        let heads = |t: Tensor, len: usize| t.reshape(&[1, len, 1, c]);
                        let sc = sc.reshape(&[1, 1, r, hw])?;
                        let p = prefix(p, &[1, 1, r, hw])?;
                        ops::attention_scores(&heads(q.narrow(0, r0, r)?, r)?, &heads(k.clone(), hw)?, scale, &sc)?;
                        ops::softmax(&sc, &p)?;
                        ops::attention_apply(&p, &heads(v.clone(), hw)?, &heads(o.narrow(0, r0, r)?, r)?)?;
                    }
                }
                r0 += r;
            }
            ops::linear(&o, &wproj, Some(bproj), &out.t.narrow(1, f, 1)?.reshape(&[hw, c])?)?;
        }
        drop(n);
        ops::add(&out.t, &x.t, &out.t)?;
        Ok(out)
    }
}

/// The modes of `WanResample`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResampleMode {
    Upsample2d,
    Upsample3d,
    Downsample2d,
    Downsample3d,
}

/// `WanResample(dim, mode)`: `resample.1` (the spatial Conv2d) and, for the 3-D modes, `time_conv`.
pub struct WanResample {
    pub unit: UnitId,
    pub mode: ResampleMode,
    pub resample: WanCausalConv3d,
    pub time_conv: Option<WanCausalConv3d>,
    pub dim: usize,
}

impl WanResample {
    pub fn new(vb: &VarBuilder, dim: usize, mode: ResampleMode) -> Self {
        use ResampleMode::*;
        vb.unit(|u| {
            let r1 = vb.pp("resample").pp(1);
            let tc = vb.pp("time_conv");
            let (resample, time_conv) = match mode {
                // nn.Upsample(2, "nearest-exact") then Conv2d(dim → dim/2, 3, padding 1).
                Upsample2d | Upsample3d => (
                    WanCausalConv3d::declare_2d(u, &r1, dim, dim / 2, 3, 1, 1),
                    (mode == Upsample3d).then(|| WanCausalConv3d::declare(u, &tc, dim, 2 * dim, (3, 1, 1), (1, 0, 0))),
                ),
                // ZeroPad2d((0, 1, 0, 1)) then Conv2d(dim → dim, 3, stride 2): padding applied in `forward`.
                Downsample2d | Downsample3d => {
                    let r = WanCausalConv3d::declare_2d(u, &r1, dim, dim, 3, 0, 2);
                    let t = (mode == Downsample3d).then(|| {
                        let mut t = WanCausalConv3d::declare(u, &tc, dim, dim, (3, 1, 1), (0, 0, 0));
                        t.stride = (2, 1, 1);
                        t
                    });
                    (r, t)
                }
            };
            WanResample { unit: u.id(), mode, resample, time_conv, dim }
        })
    }

    fn down_geom(&self) -> Conv3dGeom {
        Conv3dGeom { pad_t: 0, pad_h: (0, 1), pad_w: (0, 1), stride: (1, 2, 2) }
    }

    /// Whether this is an upsampler (time part first, then the spatial part; a downsampler runs
    /// them the other way round).
    fn is_up(&self) -> bool {
        matches!(self.mode, ResampleMode::Upsample2d | ResampleMode::Upsample3d)
    }

    pub fn plan(&self, walk: &mut Walk) {
        if self.is_up() {
            self.plan_time(walk);
            self.plan_spatial(walk);
        } else {
            self.plan_spatial(walk);
            self.plan_time(walk);
        }
    }

    /// Plan of the time part ([`Self::forward_time`]): upsample3d's or downsample3d's time_conv, or
    /// nothing.
    pub fn plan_time(&self, walk: &mut Walk) {
        let c = self.dim;
        match (self.mode, &self.time_conv) {
            (ResampleMode::Upsample3d, Some(tc)) => {
                walk.cache(super::exec::CACHE_T, c);
                if !walk.first {
                    let t = walk.t;
                    walk.take(t, walk.h, walk.w, 2 * c);
                    tc.plan_flops(walk, t * walk.h * walk.w);
                    walk.set(2 * t, walk.h, walk.w, c);
                }
            }
            (ResampleMode::Downsample3d, Some(tc)) => {
                walk.cache(1, c);
                if !walk.first {
                    let to = (1 + walk.t).saturating_sub(3) / 2 + 1;
                    tc.plan_flops(walk, to * walk.h * walk.w);
                    walk.set(to, walk.h, walk.w, c);
                }
            }
            _ => {}
        }
    }

    /// Plan of the spatial part ([`Self::forward_spatial`]).
    pub fn plan_spatial(&self, walk: &mut Walk) {
        if !self.is_up() {
            let (_, h, w) = self.resample.out_dims(walk.t, walk.h, walk.w, &self.down_geom(), 0);
            self.resample.plan_flops(walk, walk.t * h * w);
            walk.set(walk.t, h, w, self.dim);
            return;
        }
        let (t, h, w, c) = (walk.t, walk.h, walk.w, self.dim);
        let rows = self.band_rows(h, w, walk.stream);
        let up_rows = bands(2 * h, rows, self.resample.padding.1).map(|b| 2 * b.input.len()).max().unwrap_or(0);
        walk.take(1, up_rows, 2 * w, c);
        self.resample.plan_flops(walk, t * 4 * h * w);
        walk.set(t, 2 * h, 2 * w, c / 2);
    }

    /// Output rows per band of the spatial part on frames of h × w: the whole frame, or with
    /// `stream` (the decoder's tail frame by frame, decode.rs) near-equal bands whose slice of the
    /// 2x-upsampled input (the band, `padding` rows of context each side, a row more where a band edge
    /// splits a pixel's two copies) holds no more elements than one output frame, so that slice is
    /// not the largest tensor of the tail (a whole frame of it is twice an output frame: C channels
    /// where the output has C/2). Each band runs the same conv on the same values as those rows of
    /// the whole frame do (zero rows only at the frame's edges), so the output is the same; bands
    /// start on rows 16-byte aligned (the conv kernels' rule) or the frame stays whole.
    pub fn band_rows(&self, h: usize, w: usize, stream: bool) -> usize {
        let h2 = 2 * h;
        let aligned = (2 * w * self.resample.cout) % 8 == 0 && (2 * w * self.dim) % 8 == 0;
        if !stream || !aligned || h2 == 0 {
            return h2;
        }
        let limit = h2 * self.resample.cout / self.dim;
        let extra = 2 * self.resample.padding.1 + 2;
        let n = (1..=h2).find(|&n| h2.div_ceil(n) + extra <= limit).unwrap_or(h2);
        h2.div_ceil(n)
    }

    pub fn forward<'p>(&self, ctx: &Ctx<'p, '_, '_, '_>, x: Act<'p>) -> Result<Act<'p>> {
        let g = ctx.fw.unit(self.unit)?;
        if self.is_up() {
            let y = self.time_part(ctx, &g, x)?;
            self.spatial_part(ctx, &g, y)
        } else {
            let s = self.spatial_part(ctx, &g, x)?;
            self.time_part(ctx, &g, s)
        }
    }
}

impl WanResample {
    /// The time part alone (the decoder's tail runs an upsampler's on the whole chunk, then its
    /// spatial part frame by frame in later forwards; the encoder runs a downsampler's spatial part
    /// frame by frame, then its time part on the whole chunk): takes the unit.
    pub fn forward_time<'p>(&self, ctx: &Ctx<'p, '_, '_, '_>, x: Act<'p>) -> Result<Act<'p>> {
        let g = ctx.fw.unit(self.unit)?;
        self.time_part(ctx, &g, x)
    }

    /// The spatial part alone: takes the unit.
    pub fn forward_spatial<'p>(&self, ctx: &Ctx<'p, '_, '_, '_>, y: Act<'p>) -> Result<Act<'p>> {
        let g = ctx.fw.unit(self.unit)?;
        self.spatial_part(ctx, &g, y)
    }

    /// The time_conv of a 3-D mode (a 2-D mode: `x` as it is). diffusers `WanResample.forward` runs
    /// upsample3d's before `resample` and downsample3d's after it.
    fn time_part<'p>(&self, ctx: &Ctx<'p, '_, '_, '_>, g: &UnitGuard<'_>, x: Act<'p>) -> Result<Act<'p>> {
        match (self.mode, &self.time_conv) {
            (ResampleMode::Upsample3d, Some(tc)) => self.up_time(ctx, g, tc, x),
            (ResampleMode::Downsample3d, Some(tc)) => self.down_time(ctx, g, tc, x),
            _ => Ok(x),
        }
    }

    /// `resample`: an upsampler's nearest 2x upsampling and Conv2d, or a downsampler's strided Conv2d.
    fn spatial_part<'p>(&self, ctx: &Ctx<'p, '_, '_, '_>, g: &UnitGuard<'_>, y: Act<'p>) -> Result<Act<'p>> {
        if self.is_up() {
            self.up_spatial(ctx, g, y)
        } else {
            self.down_spatial(ctx, g, y)
        }
    }

    /// ZeroPad2d((0, 1, 0, 1)) then the stride-2 Conv2d, per frame.
    fn down_spatial<'p>(&self, ctx: &Ctx<'p, '_, '_, '_>, g: &UnitGuard<'_>, x: Act<'p>) -> Result<Act<'p>> {
        let (t, h, w, c) = x.dims();
        let geom = self.down_geom();
        let (_, ho, wo) = self.resample.out_dims(t, h, w, &geom, 0);
        let s = ctx.pool.take(t, ho, wo, c)?;
        self.resample.run(g, &x.t, None, None, &geom, &s.t)?;
        Ok(s)
    }

    /// downsample3d's time_conv (diffusers `WanResample.forward`): the first chunk passes through
    /// (and is cached); later chunks run the stride-2 time_conv over [last cached frame ; chunk].
    fn down_time<'p>(&self, ctx: &Ctx<'p, '_, '_, '_>, g: &UnitGuard<'_>, tc: &WanCausalConv3d, s: Act<'p>) -> Result<Act<'p>> {
        let (t, h, w, c) = s.dims();
        let cache = ctx.next_cache()?;
        if !cache.started() {
            cache.keep_last(&s.t)?;
            return Ok(s);
        }
        if 1 + t < 3 {
            return Err(wanrt_runtime::Error::invalid(format!("vae: downsample3d got a {t}-frame chunk after the first; it needs 2 or more")));
        }
        let prev = cache.frames()?;
        let geom = Conv3dGeom { pad_t: 0, pad_h: (0, 0), pad_w: (0, 0), stride: tc.stride };
        let (to, _, _) = tc.out_dims(t, h, w, &geom, cache.len());
        let out = ctx.pool.take(to, h, w, c)?;
        tc.run(g, &s.t, prev.as_ref(), None, &geom, &out.t)?;
        cache.keep_last(&s.t)?;
        Ok(out)
    }

    /// upsample3d's time_conv. diffusers `WanResample.forward`, upsample3d: the first chunk skips
    /// time_conv ("Rep"); later chunks run it causally over the frames after the first, and channels
    /// [0, C) / [C, 2C) become frames 2t / 2t + 1.
    fn up_time<'p>(&self, ctx: &Ctx<'p, '_, '_, '_>, g: &UnitGuard<'_>, tc: &WanCausalConv3d, x: Act<'p>) -> Result<Act<'p>> {
        let (t, h, w, c) = x.dims();
        let cache = ctx.next_cache()?;
        if !cache.started() {
            cache.start();
            return Ok(x);
        }
        let doubled = tc.forward_cached_with(ctx, g, &x.t, cache)?;
        let z = ctx.pool.take(2 * t, h, w, c)?;
        ops::time_interleave(&doubled.t, &z.t)?;
        Ok(z)
    }

    /// `nn.Upsample(2, "nearest-exact")` then the Conv2d (`resample.1`), frame by frame (the spatial
    /// conv is per frame): the 2x-upsampled input, the largest tensor of the decoder, then takes one
    /// frame of memory, not four; in [`Self::band_rows`] bands it takes less.
    fn up_spatial<'p>(&self, ctx: &Ctx<'p, '_, '_, '_>, g: &UnitGuard<'_>, y: Act<'p>) -> Result<Act<'p>> {
        let (t, h, w, c) = y.dims();
        let pad = self.resample.padding.1;
        let rows = self.band_rows(h, w, ctx.stream);
        let up_rows = bands(2 * h, rows, pad).map(|b| 2 * b.input.len()).max().unwrap_or(0);
        let out = ctx.pool.take(t, 2 * h, 2 * w, self.resample.cout)?;
        let up = ctx.pool.take(1, up_rows, 2 * w, c)?;
        for f in 0..t {
            let frame = y.t.narrow(1, f, 1)?;
            for b in bands(2 * h, rows, pad) {
                // Input rows `b.input` give upsampled rows [2·start, 2·end); the conv reads `b.read` of
                // them, zero-padded only where the band meets the frame's edge.
                let src = frame.narrow(2, b.input.start, b.input.len())?;
                let upb = up.t.narrow(2, 0, 2 * b.input.len())?;
                ops::upsample_nearest2x(&src, &upb)?;
                let x = upb.narrow(2, b.read.start - 2 * b.input.start, b.read.len())?;
                let mut geom = self.resample.geom(0);
                geom.pad_h = (if b.out.start == 0 { pad } else { 0 }, if b.out.end == 2 * h { pad } else { 0 });
                self.resample.run(g, &x, None, None, &geom, &out.t.narrow(1, f, 1)?.narrow(2, b.out.start, b.out.len())?)?;
            }
        }
        Ok(out)
    }
}

/// One row band of an upsampler's spatial part: output rows `out`, the upsampled rows the conv reads
/// (`read`: `out` and `pad` rows of context each side, clipped to the frame) and the input rows
/// whose 2x upsampling covers them (`input`).
struct Band {
    out: std::ops::Range<usize>,
    read: std::ops::Range<usize>,
    input: std::ops::Range<usize>,
}

/// The bands of `rows` output rows covering `h2` (the last one shorter); one band of `h2` rows is the
/// whole frame (read: all of it, input: all of it).
fn bands(h2: usize, rows: usize, pad: usize) -> impl Iterator<Item = Band> {
    (0..h2).step_by(rows.max(1)).map(move |r0| {
        let out = r0..(r0 + rows).min(h2);
        let read = out.start.saturating_sub(pad)..(out.end + pad).min(h2);
        let input = read.start / 2..read.end.div_ceil(2);
        Band { out, read, input }
    })
}

impl WanCausalConv3d {
    /// [`Self::forward_cached`] with a cache the caller already took (upsample3d's).
    pub fn forward_cached_with<'p>(&self, ctx: &Ctx<'p, '_, '_, '_>, g: &UnitGuard<'_>, x: &Tensor, cache: &super::exec::Cache) -> Result<Act<'p>> {
        let prev = cache.frames()?;
        let geom = self.geom(cache.len());
        let (t, h, w) = self.out_dims(x.dim(1), x.dim(2), x.dim(3), &geom, cache.len());
        let out = ctx.pool.take(t, h, w, self.cout)?;
        self.run(g, x, prev.as_ref(), None, &geom, &out.t)?;
        cache.push(x)?;
        Ok(out)
    }
}

/// `WanMidBlock(dim, num_layers=1)`: resnets.0, then (attentions.i, resnets.i+1).
pub struct WanMidBlock {
    pub resnets: Vec<WanResidualBlock>,
    pub attentions: Vec<WanAttentionBlock>,
}

impl WanMidBlock {
    pub fn new(vb: &VarBuilder, dim: usize) -> Self {
        let resnets0 = WanResidualBlock::new(&vb.pp("resnets").pp(0), dim, dim);
        let attn = WanAttentionBlock::new(&vb.pp("attentions").pp(0), dim);
        let resnets1 = WanResidualBlock::new(&vb.pp("resnets").pp(1), dim, dim);
        WanMidBlock { resnets: vec![resnets0, resnets1], attentions: vec![attn] }
    }

    pub fn plan(&self, walk: &mut Walk) {
        self.resnets[0].plan(walk);
        for (a, r) in self.attentions.iter().zip(&self.resnets[1..]) {
            a.plan(walk);
            r.plan(walk);
        }
    }

    pub fn forward<'p>(&self, ctx: &Ctx<'p, '_, '_, '_>, x: Act<'p>) -> Result<Act<'p>> {
        let mut x = self.resnets[0].forward(ctx, x)?;
        for (a, r) in self.attentions.iter().zip(&self.resnets[1..]) {
            x = a.forward(ctx, x)?;
            x = r.forward(ctx, x)?;
        }
        Ok(x)
    }
}

/// `WanUpBlock`: `num_res_blocks + 1` residual blocks, then an optional upsampler.
pub struct WanUpBlock {
    pub resnets: Vec<WanResidualBlock>,
    pub upsamplers: Option<WanResample>,
}

impl WanUpBlock {
    pub fn new(vb: &VarBuilder, cin: usize, cout: usize, num_res_blocks: usize, mode: Option<ResampleMode>) -> Self {
        let resnets = (0..num_res_blocks + 1).map(|i| WanResidualBlock::new(&vb.pp("resnets").pp(i), if i == 0 { cin } else { cout }, cout)).collect();
        let upsamplers = mode.map(|m| WanResample::new(&vb.pp("upsamplers").pp(0), cout, m));
        WanUpBlock { resnets, upsamplers }
    }

    pub fn plan(&self, walk: &mut Walk) {
        self.resnets.iter().for_each(|r| r.plan(walk));
        if let Some(u) = &self.upsamplers {
            u.plan(walk);
        }
    }

    pub fn forward<'p>(&self, ctx: &Ctx<'p, '_, '_, '_>, mut x: Act<'p>) -> Result<Act<'p>> {
        for r in &self.resnets {
            x = r.forward(ctx, x)?;
        }
        match &self.upsamplers {
            Some(u) => u.forward(ctx, x),
            None => Ok(x),
        }
    }

    /// Plan of [`Self::forward_time`].
    pub fn plan_time(&self, walk: &mut Walk) {
        self.resnets.iter().for_each(|r| r.plan(walk));
        if let Some(u) = &self.upsamplers {
            u.plan_time(walk);
        }
    }

    /// The residual blocks and the upsampler's time part ([`WanResample::forward_time`]); its
    /// spatial part ([`WanResample::forward_spatial`]) completes the block.
    pub fn forward_time<'p>(&self, ctx: &Ctx<'p, '_, '_, '_>, mut x: Act<'p>) -> Result<Act<'p>> {
        for r in &self.resnets {
            x = r.forward(ctx, x)?;
        }
        match &self.upsamplers {
            Some(u) => u.forward_time(ctx, x),
            None => Ok(x),
        }
    }
}

/// `norm_out`, SiLU and `conv_out` of the encoder and decoder, one unit.
pub struct Head {
    pub unit: UnitId,
    pub norm_out: WanRmsNorm,
    pub conv_out: WanCausalConv3d,
}

impl Head {
    pub fn new(vb: &VarBuilder, dim: usize, cout: usize) -> Self {
        vb.unit_named(&vb.key("conv_out"), |u| Head {
            unit: u.id(),
            norm_out: WanRmsNorm::declare(u, &vb.pp("norm_out"), dim, false),
            conv_out: WanCausalConv3d::declare(u, &vb.pp("conv_out"), dim, cout, (3, 3, 3), (1, 1, 1)),
        })
    }

    pub fn plan(&self, walk: &mut Walk) {
        walk.take(walk.t, walk.h, walk.w, walk.c);
        self.conv_out.plan_cached(walk);
    }

    pub fn forward<'p>(&self, ctx: &Ctx<'p, '_, '_, '_>, x: Act<'p>) -> Result<Act<'p>> {
        let g = ctx.fw.unit(self.unit)?;
        let (t, h, w, c) = x.dims();
        let n = ctx.pool.take(t, h, w, c)?;
        self.norm_out.run(&g, &x.t, true, &n.t)?;
        drop(x);
        self.conv_out.forward_cached(ctx, &g, &n.t, None)
    }
}

/// A unit holding one conv (conv_in, quant_conv, post_quant_conv).
pub struct ConvUnit {
    pub unit: UnitId,
    pub conv: WanCausalConv3d,
}

impl ConvUnit {
    pub fn new(vb: &VarBuilder, cin: usize, cout: usize, k: usize) -> Self {
        let pad = k / 2;
        vb.unit(|u| ConvUnit { unit: u.id(), conv: WanCausalConv3d::declare(u, vb, cin, cout, (k, k, k), (pad, pad, pad)) })
    }

    /// A causal k3 conv with its cache, or a 1×1×1 conv without.
    pub fn plan(&self, walk: &mut Walk) {
        if self.conv.k.0 > 1 {
            self.conv.plan_cached(walk);
        } else {
            self.conv.plan_flops(walk, walk.t * walk.h * walk.w);
            walk.set(walk.t, walk.h, walk.w, self.conv.cout);
        }
    }

    pub fn forward<'p>(&self, ctx: &Ctx<'p, '_, '_, '_>, x: &Tensor) -> Result<Act<'p>> {
        let g = ctx.fw.unit(self.unit)?;
        if self.conv.k.0 > 1 {
            self.conv.forward_cached(ctx, &g, x, None)
        } else {
            self.conv.forward(ctx, &g, x, None)
        }
    }
}
