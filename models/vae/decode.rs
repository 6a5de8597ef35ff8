//! `AutoencoderKLWan` decode (diffusers `_decode`: latent frames one at a time through the causal
//! feature cache), untiled or in the exact spatial tiles of [`super::tiling`], and the planner that
//! picks tiles for a device budget. Within a chunk the tail goes on one output frame at a time from
//! its last temporal upsampler on ([`TilePlan::stream`], `WanDecoder3d::tail_frames`), the same output
//! with a frame, not four, as its largest activation.

use wanrt_runtime::arena::{ArenaPlan, Buf};
use wanrt_runtime::offload::{fmt_bytes, Engine};
use wanrt_runtime::ops;
use wanrt_runtime::{DType, Error, Result, Tensor};

use super::exec::{reborrow, Act, AttnBufs, AttnScratch, Cache, Ctx, Pool, StageFn, Walk, POOL_SLOTS};
use super::model::AutoencoderKLWan;
use super::tiling::{counts, Tile, TilePlan};

/// Decode's buffers: the input, one output chunk (f32, NCTHW) and the same chunk channels-last that
/// the tail fills frame by frame (or tile by tile); the latent part's caches, and its output kept for
/// the tail (`tail_in`); one region holding first the latent part's pool and attention scratch, then
/// the tail's pool; one tail cache set per tile of a pass.
struct DecodeBufs {
    latents: Buf,
    frames: Buf,
    frames_cl: Buf,
    tail_in: Buf,
    latent_pool: Vec<Buf>,
    latent_caches: Vec<Buf>,
    attn: Option<AttnBufs>,
    tail_pool: Vec<Buf>,
    tail_caches: Vec<Vec<Buf>>,
}

/// What the planner weighs for one candidate.
struct Candidate {
    plan: TilePlan,
    bytes: u64,
    cost: f64,
}

impl AutoencoderKLWan {
    /// The latent part's walk of one chunk (the worst case: a later chunk unless there is only one).
    fn latent_walk(&self, t: usize, h: usize, w: usize) -> Walk {
        let mut walk = Walk::new(1, h, w, self.cfg.z_dim, t == 1);
        self.decoder.module.plan_latent(&mut walk);
        walk
    }

    /// The tail's walk for a window of (wh, ww) latent pixels, after `latent`, frame by frame after its
    /// last temporal upsampler when `stream` (see [`TilePlan::stream`]).
    fn tail_walk(&self, latent: &Walk, wh: usize, ww: usize, stream: bool) -> Walk {
        let s = self.decoder.module.split_scale();
        let mut walk = Walk::new(latent.t, wh * s, ww * s, latent.c, latent.first).streamed(stream);
        self.decoder.module.plan_tail(&mut walk);
        walk
    }

    /// The walk of one whole chunk, untiled (tests and FLOP counts).
    pub(crate) fn decode_walk(&self, t: usize, h: usize, w: usize) -> Walk {
        let mut walk = Walk::new(1, h, w, self.cfg.z_dim, t == 1);
        self.decoder.module.plan(&mut walk);
        walk
    }

    /// The halo tiles need, in latent pixels: the tail's receptive radius rounded up.
    pub fn decode_halo(&self) -> usize {
        let d = &self.decoder.module;
        d.tail_radius().div_ceil(d.split_scale() * d.tail_scale())
    }

    /// FLOPs of decoding a (T, h, w) latent untiled (every conv tap and the attention, as computed).
    pub fn decode_flops(&self, t: usize, h: usize, w: usize) -> f64 {
        let first = self.decode_walk(1, h, w).flops;
        first + (t.saturating_sub(1)) as f64 * self.decode_walk(2, h, w).flops
    }

    fn decode_plan(&self, t: usize, h: usize, w: usize, tiles: &TilePlan) -> Result<(ArenaPlan, DecodeBufs)> {
        tiles.check(h, w)?;
        let (_, hv, wv) = self.video_dims(t, h, w)?;
        let dt = self.decoder.dtype;
        let (co, st) = (self.cfg.out_channels, self.cfg.scale_factor_temporal);
        let mut a = ArenaPlan::new();
        let latents = a.buffer("vae decode input (channels-last)", &[1, t, h, w, self.cfg.z_dim], dt);
        let frames = a.buffer("vae decoded frames", &[co * st * hv * wv], DType::F32);
        let frames_cl = a.buffer("vae decoded frames (channels-last)", &[st * hv * wv * co], dt);
        let lw = self.latent_walk(t, h, w);
        let latent_caches = lw.caches.iter().map(|&[f, ch, cw, c]| a.buffer("vae feature cache", &[1, f, ch, cw, c], dt)).collect();
        // 1-D, like `frames_cl`: a chunk's frames are its front part (the first chunk has fewer).
        let tail_in = a.buffer("vae decode tail input (channels-last)", &[lw.t * lw.h * lw.w * lw.c], dt);
        let (wh, ww) = tiles.max_window();
        let tw = self.tail_walk(&lw, wh, ww, tiles.stream);
        // The latent part's pool and attention scratch are free once its output is in `tail_in`: the
        // tail's pool takes the same memory.
        let lpool = Pool::bytes(POOL_SLOTS, lw.max_elems, dt);
        let latent_bytes = lpool + lw.attn.map_or(0, |(hw, c)| AttnScratch::bytes(hw, c, dt));
        let region = a.buffer("vae activations", &[(latent_bytes.max(Pool::bytes(POOL_SLOTS, tw.max_elems, dt)) / dt.size() as u64) as usize], dt);
        let latent_pool = Pool::plan_in(&mut a, region, 0, POOL_SLOTS, lw.max_elems, dt);
        let attn = lw.attn.map(|(hw, c)| AttnScratch::plan_in(&mut a, region, lpool, hw, c, dt));
        let tail_pool = Pool::plan_in(&mut a, region, 0, POOL_SLOTS, tw.max_elems, dt);
        let tail_caches = (0..tiles.group)
            .map(|_| tw.caches.iter().map(|&[f, ch, cw, c]| a.buffer("vae feature cache (tile)", &[1, f, ch, cw, c], dt)).collect())
            .collect();
        Ok((a, DecodeBufs { latents, frames, frames_cl, tail_in, latent_pool, latent_caches, attn, tail_pool, tail_caches }))
    }

    /// Device bytes an untiled decode of one (T, h, w) latent allocates.
    pub fn decode_activation_bytes(&self, t: usize, h: usize, w: usize) -> Result<u64> {
        self.decode_plan(t, h, w, &TilePlan::untiled(h, w))?.0.bytes()
    }

    /// Device bytes a decode of one (T, h, w) latent allocates with `tiles`.
    pub fn decode_tiled_bytes(&self, t: usize, h: usize, w: usize, tiles: &TilePlan) -> Result<u64> {
        self.decode_plan(t, h, w, tiles)?.0.bytes()
    }

    /// Tiles for a decode of (T, h, w) latents: `tile` (output pixels, a multiple of the spatial
    /// factor) forces the tile size; otherwise, with a `budget`, the plan of least work (each pass
    /// recomputes the latent part, each halo adds tail work, the frame-by-frame layout costs
    /// [`super::tiling::STREAM_COST`] times its whole-chunk twin) among those whose arena plus
    /// `overhead` (weights, workspace, input and output) fits, each grid in both layouts; without
    /// either, untiled on whole chunks. A budget too small for any tile (or for the forced one) is an
    /// error naming the least that works.
    pub fn plan_decode_tiles(&self, t: usize, h: usize, w: usize, budget: Option<u64>, overhead: u64, tile: Option<usize>) -> Result<TilePlan> {
        self.video_dims(t, h, w)?;
        let ss = self.cfg.scale_factor_spatial;
        let halo = self.decode_halo();
        let lw = self.latent_walk(t, h, w);
        // Tail FLOPs are proportional to the window's area (same-padded convs): one latent pixel's worth.
        let px_flops = self.tail_walk(&lw, 1, 1, true).flops;
        let shapes: Vec<(usize, usize)> = match tile {
            Some(px) => {
                if px == 0 || px % ss != 0 {
                    return Err(Error::invalid(format!("vae decode: --tile {px}: the tile side must be a positive multiple of {ss} pixels")));
                }
                let side = px / ss;
                vec![(h.div_ceil(side), w.div_ceil(side))]
            }
            None if budget.is_none() => vec![(1, 1)],
            None => counts(h).into_iter().flat_map(|r| counts(w).into_iter().map(move |c| (r, c))).collect(),
        };
        let avail = budget.map(|b| b.saturating_sub(overhead));
        let mut best: Option<Candidate> = None;
        let mut least = u64::MAX;
        // Each grid in both layouts (whole chunks, frame by frame): the one of least cost that fits.
        for (rows, cols) in shapes {
            for layout in TilePlan::grid(h, w, rows, cols, halo, 1)?.layouts() {
                let grid = |group: usize| -> Result<TilePlan> {
                    let g = TilePlan::grid(h, w, rows, cols, halo, group)?;
                    Ok(if layout.stream { g } else { g.whole_chunks() })
                };
                let bytes1 = self.decode_tiled_bytes(t, h, w, &layout)?;
                least = least.min(bytes1);
                let n = layout.tiles.len();
                let group = match avail {
                    None => n,
                    Some(a) if bytes1 > a => continue,
                    Some(a) => {
                        // Bytes grow by one cache set per tile of a pass; take as many as fit.
                        let per = if n > 1 { self.decode_tiled_bytes(t, h, w, &grid(2)?)? - bytes1 } else { 0 };
                        let mut g = (a - bytes1).checked_div(per).map_or(n, |k| (1 + k).min(n as u64) as usize);
                        while g > 1 && self.decode_tiled_bytes(t, h, w, &grid(g)?)? > a {
                            g -= 1;
                        }
                        g
                    }
                };
                let plan = grid(group)?;
                let bytes = self.decode_tiled_bytes(t, h, w, &plan)?;
                let cost = (plan.passes() as f64 * lw.flops + plan.window_area() as f64 * px_flops) * plan.layout_cost();
                // Untiled first where it fits (the 720p-81f decode took 2.16 s untiled, 2.92 s in tiles).
                let better = |b: &Candidate| match (plan.is_untiled(), b.plan.is_untiled()) {
                    (true, false) => true,
                    (false, true) => false,
                    _ => cost < b.cost || (cost == b.cost && bytes < b.bytes),
                };
                if best.as_ref().is_none_or(better) {
                    best = Some(Candidate { plan, bytes, cost });
                }
            }
        }
        match best {
            Some(c) => Ok(c.plan),
            None => {
                let what = match tile {
                    Some(px) => format!("with {px}-pixel tiles"),
                    None => "with any tiling".into(),
                };
                Err(Error::invalid(format!(
                    "vae decode of {t}x{h}x{w} latents {what} needs at least {} of device memory (weights, activations of one tile, input and output); the budget is {}",
                    fmt_bytes(least.saturating_add(overhead)),
                    fmt_bytes(budget.unwrap_or(0))
                )))
            }
        }
    }

    /// [`Self::decode_with`] in the spatial tiles of `tiles` (made for this latent grid): the same
    /// output bit for bit, in chunks handed to `sink` in order. With more than one pass, chunks leave
    /// during the last pass. `capture` sees the tail's stages only untiled (with [`TilePlan::stream`],
    /// frame by frame).
    pub fn decode_tiled_with(
        &self,
        engine: &Engine,
        latents: &Tensor,
        tiles: &TilePlan,
        mut sink: impl FnMut(usize, usize, &Tensor) -> Result<()>,
        mut capture: Option<&mut StageFn<'_>>,
    ) -> Result<()> {
        Self::check_engine(engine, &self.decoder.units, "decode")?;
        let [b, z, t, h, w] = *latents.shape() else {
            return Err(Error::Shape { op: "vae decode", name: "latents".into(), expected: "[B, z, T, h, w]".into(), got: latents.shape().to_vec() });
        };
        if z != self.cfg.z_dim || b == 0 {
            return Err(Error::Shape { op: "vae decode", name: "latents".into(), expected: format!("[B ≥ 1, {}, T, h, w]", self.cfg.z_dim), got: latents.shape().to_vec() });
        }
        latents.expect_contiguous("vae decode", "latents")?;
        let (frames_total, hv, wv) = self.video_dims(t, h, w)?;
        let dev = engine.device().clone();
        let (plan, bufs) = self.decode_plan(t, h, w, tiles)?;
        let arena = plan.allocate(&dev)?;
        let caches = |set: &[Buf]| -> Vec<Cache> { set.iter().map(|&c| Cache::new(arena.get(c).clone())).collect() };
        let (lpool, tpool) = (Pool::new(&arena, &bufs.latent_pool), Pool::new(&arena, &bufs.tail_pool));
        let lcaches = caches(&bufs.latent_caches);
        let tcaches: Vec<Vec<Cache>> = bufs.tail_caches.iter().map(|s| caches(s)).collect();
        let attn = bufs.attn.as_ref().map(|a| AttnScratch::new(&arena, a));
        let (zcl, frames, fcl, tin) = (arena.get(bufs.latents), arena.get(bufs.frames), arena.get(bufs.frames_cl), arena.get(bufs.tail_in));
        let (co, st, dt) = (self.cfg.out_channels, self.cfg.scale_factor_temporal, self.decoder.dtype);
        let dec = &self.decoder.module;
        let (ss, os) = (dec.split_scale(), dec.split_scale() * dec.tail_scale());
        let (passes, untiled) = (tiles.passes(), tiles.is_untiled());
        // Earlier passes' pixels (channels-last [F, H, W, C] bytes of the model dtype), for the last pass.
        let frame_bytes = hv * wv * co * dt.size();
        let mut host = if passes > 1 { vec![0u8; frames_total * frame_bytes] } else { Vec::new() };
        for s in 0..b {
            ops::to_channels_last(&latents.narrow(0, s, 1)?, zcl)?;
            for p in 0..passes {
                let last = p + 1 == passes;
                lcaches.iter().chain(tcaches.iter().flatten()).for_each(Cache::reset);
                let mut first = 0;
                for i in 0..t {
                    let n = if i == 0 { 1 } else { st };
                    let chunk_cl = fcl.narrow(0, 0, n * hv * wv * co)?.reshape(&[1, n, hv, wv, co])?;
                    if last && passes > 1 {
                        chunk_cl.write_bytes(&host[first * frame_bytes..(first + n) * frame_bytes])?;
                    }
                    let cap = reborrow(&mut capture);
                    // The latent part, its output copied to `tail_in` (the tail's pool reuses the
                    // latent part's memory); then the tail, untiled or tile by tile, each in forwards
                    // of its own, since a forward takes each unit once: one over the chunk
                    // (`tail_chunk`), then one per frame (`tail_frames`; all frames in one without
                    // `tiles.stream`). Every frame goes to `chunk_cl`, or each tile's interior of it.
                    let (x, mut cap) = engine.forward(|fw| {
                        let lctx = Ctx::new(fw, &lpool, &lcaches, attn.as_ref(), cap);
                        let y = dec.latent_part(&lctx, Act::view(zcl.narrow(1, i, 1)?))?;
                        let (n2, h2, w2, c) = y.dims();
                        let x = tin.narrow(0, 0, n2 * h2 * w2 * c)?.reshape(&[1, n2, h2, w2, c])?;
                        x.copy_from(&y.t)?;
                        Ok((x, lctx.capture.into_inner()))
                    })?;
                    if !untiled {
                        cap = None;
                    }
                    for (k, tile) in tiles.pass(p).iter().enumerate() {
                        let tc = &tcaches[k];
                        let (zt, next, c) = engine.forward(|fw| {
                            let ctx = Ctx::new(fw, &tpool, tc, None, cap).streaming(tiles.stream);
                            let input = if untiled {
                                Act::view(x.clone())
                            } else {
                                let (wh, ww) = (tile.wy.len() * ss, tile.wx.len() * ss);
                                let crop = tpool.take(x.dim(1), wh, ww, x.dim(4))?;
                                ops::copy_window(&x.narrow(2, tile.wy.start * ss, wh)?.narrow(3, tile.wx.start * ss, ww)?, &crop.t)?;
                                crop
                            };
                            let zt = dec.tail_chunk(&ctx, input)?;
                            Ok((zt, ctx.next.get(), ctx.capture.into_inner()))
                        })?;
                        cap = c;
                        let nz = zt.t.dim(1);
                        if nz != n {
                            return Err(Error::invalid(format!("vae decode: chunk {i} gave {nz} frames, {n} expected")));
                        }
                        let step = if tiles.stream { 1 } else { nz };
                        for f in (0..nz).step_by(step) {
                            cap = engine.forward(|fw| {
                                let ctx = Ctx::new(fw, &tpool, tc, None, cap).streaming(tiles.stream).caches_from(next);
                                let y = dec.tail_frames(&ctx, Act::view(zt.t.narrow(1, f, step)?))?;
                                let want = [1, step, tile.wy.len() * os, tile.wx.len() * os, co];
                                if y.t.shape() != want {
                                    return Err(Error::invalid(format!("vae decode: chunk {i} gave {:?}, {want:?} expected", y.t.shape())));
                                }
                                let (ih, iw) = (tile.y.len() * os, tile.x.len() * os);
                                let inner = y.t.narrow(2, (tile.y.start - tile.wy.start) * os, ih)?.narrow(3, (tile.x.start - tile.wx.start) * os, iw)?;
                                ops::copy_window(&inner, &chunk_cl.narrow(1, f, step)?.narrow(2, tile.y.start * os, ih)?.narrow(3, tile.x.start * os, iw)?)?;
                                Ok(ctx.capture.into_inner())
                            })?;
                        }
                    }
                    if last {
                        // diffusers `_decode`: torch.clamp(out, min=-1.0, max=1.0).
                        let view = frames.narrow(0, 0, co * n * hv * wv)?.reshape(&[1, co, n, hv, wv])?;
                        ops::from_channels_last(&chunk_cl, Some((-1.0, 1.0)), &view)?;
                        sink(s, first, &view)?;
                    } else {
                        keep_pass(&mut host[first * frame_bytes..(first + n) * frame_bytes], &chunk_cl.to_bytes()?, tiles.pass(p), n, (hv, wv), co * dt.size(), os);
                    }
                    first += n;
                }
            }
        }
        Ok(())
    }
}

/// Copies the interiors of `tiles` from one chunk of `n` channels-last frames (`chunk`, `px` bytes per
/// pixel) into the same frames of `host`.
fn keep_pass(host: &mut [u8], chunk: &[u8], tiles: &[Tile], n: usize, (hv, wv): (usize, usize), px: usize, os: usize) {
    for f in 0..n {
        for tile in tiles {
            for y in tile.y.start * os..tile.y.end * os {
                let row = ((f * hv + y) * wv + tile.x.start * os) * px;
                let len = tile.x.len() * os * px;
                host[row..row + len].copy_from_slice(&chunk[row..row + len]);
            }
        }
    }
}
