//! `AutoencoderKLWan` encode (diffusers `_encode`: frame 0, then 4 frames at a time through the causal
//! feature cache), untiled or in exact spatial tiles, and the planner that picks tiles for a budget.
//!
//! Tiled, the encoder splits as the decoder does (tiling.rs), the other way round: the down part
//! (`WanEncoder3d::down_part`, everything through the last downsampler) runs tile by tile, each
//! window grown by `down_radius` (a halo of 6 latent pixels for Wan2.1) and aligned to whole latent
//! pixels so every stride-2 conv samples the same grid as untiled; only each tile's interior is kept,
//! in a whole-video buffer at latent resolution. The latent part (the blocks after the last
//! downsampler, the mid block with its frame-global attention, the head, `quant_conv`) then runs on
//! whole latent frames. Each tile runs every chunk with its own caches before the next starts (one
//! cache set on the device); the result equals the untiled encode bit for bit.

use wanrt_runtime::arena::{ArenaPlan, Buf};
use wanrt_runtime::offload::{fmt_bytes, Engine};
use wanrt_runtime::ops;
use wanrt_runtime::{DType, Error, Result, Tensor};

use super::exec::{reborrow, Act, AttnBufs, AttnScratch, Cache, Ctx, Pool, StageFn, Walk};
use super::model::AutoencoderKLWan;
use super::tiling::{counts, TilePlan};

/// A chunk's buffers: the pool, the caches, the attention scratch.
struct ChunkBufs {
    pool: Vec<Buf>,
    caches: Vec<Buf>,
    attn: Option<AttnBufs>,
}

fn plan_chunk(a: &mut ArenaPlan, walk: &Walk, dt: DType) -> ChunkBufs {
    let pool = Pool::plan(a, walk.max_elems, dt);
    let caches = walk.caches.iter().map(|&[t, h, w, c]| a.buffer("vae feature cache", &[1, t, h, w, c], dt)).collect();
    let attn = walk.attn.map(|(hw, c)| AttnScratch::plan(a, hw, c, dt));
    ChunkBufs { pool, caches, attn }
}

/// Encode's buffers: one chunk of input frames (channels-last), the moments; untiled, one chunk's
/// pool and caches; tiled, also the down part's output for the whole video (`down_out`), and the
/// down part's pool and caches at the largest window beside the latent part's.
struct EncodeBufs {
    video: Buf,
    moments: Buf,
    chunk: ChunkBufs,
    down: Option<(Buf, ChunkBufs)>,
}

impl AutoencoderKLWan {
    /// Frames of the largest input chunk: 1 when the video has 1 frame, else scale_factor_temporal.
    fn chunk_frames(&self, frames: usize) -> usize {
        if frames == 1 {
            1
        } else {
            self.cfg.scale_factor_temporal
        }
    }

    /// The walk of one encode chunk: the first (1 frame) when the video has 1 frame, else a 4-frame one
    /// (every buffer is at least as large for it).
    pub(crate) fn encode_walk(&self, frames: usize, h: usize, w: usize) -> Walk {
        let mut walk = Walk::new(self.chunk_frames(frames), h, w, self.cfg.in_channels, frames == 1);
        self.encoder.module.plan(&mut walk);
        walk
    }

    /// The down part's walk of one chunk for a window of (hp, wp) input pixels.
    fn down_walk(&self, frames: usize, hp: usize, wp: usize) -> Walk {
        let mut walk = Walk::new(self.chunk_frames(frames), hp, wp, self.cfg.in_channels, frames == 1);
        self.encoder.module.plan_down(&mut walk);
        walk
    }

    /// The latent part's walk of one latent frame of h × w, after `down`.
    fn enc_latent_walk(&self, down: &Walk, h: usize, w: usize) -> Walk {
        let mut walk = Walk::new(down.t, h, w, down.c, down.first);
        self.encoder.module.plan_latent(&mut walk);
        walk
    }

    /// The halo encode tiles need, in latent pixels: the down part's receptive radius rounded up.
    pub fn encode_halo(&self) -> usize {
        self.encoder.module.down_radius().div_ceil(self.cfg.scale_factor_spatial)
    }

    fn encode_plan(&self, frames: usize, h: usize, w: usize, tiles: &TilePlan) -> Result<(ArenaPlan, EncodeBufs)> {
        let (tl, hl, wl) = self.latent_dims(frames, h, w)?;
        tiles.check(hl, wl)?;
        let dt = self.encoder.dtype;
        let mut a = ArenaPlan::new();
        // One chunk of input frames at a time (1, then scale_factor_temporal), converted as it is
        // needed: a whole 81-frame 720p video channels-last would be 0.9 GB more in fp32.
        let video = a.buffer("vae encode input chunk (channels-last)", &[1, self.chunk_frames(frames), h, w, self.cfg.in_channels], dt);
        let moments = a.buffer("vae moments (channels-last)", &[1, tl, hl, wl, 2 * self.cfg.z_dim], dt);
        if tiles.is_untiled() {
            let chunk = plan_chunk(&mut a, &self.encode_walk(frames, h, w), dt);
            return Ok((a, EncodeBufs { video, moments, chunk, down: None }));
        }
        let ss = self.cfg.scale_factor_spatial;
        let (wh, ww) = tiles.max_window();
        let dw = self.down_walk(frames, wh * ss, ww * ss);
        let down_out = a.buffer("vae encoder down part output (tiled)", &[1, tl, hl, wl, dw.c], dt);
        // The tile's input window comes from the down pool (its first tensor is at least that large).
        let down = plan_chunk(&mut a, &dw, dt);
        let chunk = plan_chunk(&mut a, &self.enc_latent_walk(&dw, hl, wl), dt);
        Ok((a, EncodeBufs { video, moments, chunk, down: Some((down_out, down)) }))
    }

    /// Device bytes an untiled encode of one (frames, H, W) video allocates (the batch runs sample by sample).
    pub fn encode_activation_bytes(&self, frames: usize, h: usize, w: usize) -> Result<u64> {
        let (_, hl, wl) = self.latent_dims(frames, h, w)?;
        self.encode_plan(frames, h, w, &TilePlan::untiled(hl, wl))?.0.bytes()
    }

    /// Device bytes an encode of one (frames, H, W) video allocates with `tiles` (made for its latent grid).
    pub fn encode_tiled_bytes(&self, frames: usize, h: usize, w: usize, tiles: &TilePlan) -> Result<u64> {
        self.encode_plan(frames, h, w, tiles)?.0.bytes()
    }

    /// Tiles for an encode of a (frames, H, W) video, as [`Self::plan_decode_tiles`] picks them for a
    /// decode: `tile` (input pixels, a multiple of the spatial factor) forces the tile size; otherwise,
    /// with a `budget`, the plan of least down-part work (its windows' area) among those whose arena
    /// plus `overhead` (weights, workspace, input and output) fits; without either, untiled. The tiles
    /// run one at a time (group 1). A budget too small for any tiling is an error naming the least
    /// that works.
    pub fn plan_encode_tiles(&self, frames: usize, h: usize, w: usize, budget: Option<u64>, overhead: u64, tile: Option<usize>) -> Result<TilePlan> {
        let candidates = self.encode_candidates(frames, h, w, budget.is_some(), tile)?;
        let avail = budget.map(|b| b.saturating_sub(overhead));
        // The down part's FLOPs are proportional to the windows' area.
        let best = candidates
            .iter()
            .filter(|(_, bytes)| avail.is_none_or(|a| *bytes <= a))
            .min_by_key(|(plan, bytes)| (plan.window_area(), *bytes));
        match best {
            Some((plan, _)) => Ok(plan.clone()),
            None => {
                let what = match tile {
                    Some(px) => format!("with {px}-pixel tiles"),
                    None => "with any tiling".into(),
                };
                let least = candidates.iter().map(|(_, b)| *b).min().unwrap_or(u64::MAX);
                Err(Error::invalid(format!(
                    "vae encode of {frames}x{h}x{w} frames {what} needs at least {} of device memory (weights, activations of one tile, input and output); the budget is {}",
                    fmt_bytes(least.saturating_add(overhead)),
                    fmt_bytes(budget.unwrap_or(0))
                )))
            }
        }
    }

    /// The plans [`Self::plan_encode_tiles`] weighs, each with the bytes it allocates: the forced
    /// `tile` size, else with a budget (`sized`) every tile count of distinct tile length, else untiled.
    fn encode_candidates(&self, frames: usize, h: usize, w: usize, sized: bool, tile: Option<usize>) -> Result<Vec<(TilePlan, u64)>> {
        let (_, hl, wl) = self.latent_dims(frames, h, w)?;
        let ss = self.cfg.scale_factor_spatial;
        let shapes: Vec<(usize, usize)> = match tile {
            Some(px) => {
                if px == 0 || px % ss != 0 {
                    return Err(Error::invalid(format!("vae encode: --tile {px}: the tile side must be a positive multiple of {ss} pixels")));
                }
                let side = px / ss;
                vec![(hl.div_ceil(side), wl.div_ceil(side))]
            }
            None if !sized => vec![(1, 1)],
            None => counts(hl).into_iter().flat_map(|r| counts(wl).into_iter().map(move |c| (r, c))).collect(),
        };
        shapes
            .into_iter()
            .map(|(rows, cols)| {
                let plan = TilePlan::grid(hl, wl, rows, cols, self.encode_halo(), 1)?;
                let bytes = self.encode_tiled_bytes(frames, h, w, &plan)?;
                Ok((plan, bytes))
            })
            .collect()
    }

    /// The least device bytes any tiling of a (frames, H, W) encode allocates (for errors naming the
    /// minimum budget).
    pub fn encode_least_bytes(&self, frames: usize, h: usize, w: usize) -> Result<u64> {
        let candidates = self.encode_candidates(frames, h, w, true, None)?;
        Ok(candidates.iter().map(|(_, b)| *b).min().unwrap_or(u64::MAX))
    }

    /// The video's (B, F, H, W) and latent (T', h, w), or an error naming the bad input.
    fn check_video(&self, engine: &Engine, video: &Tensor) -> Result<([usize; 4], (usize, usize, usize))> {
        Self::check_engine(engine, &self.encoder.units, "encode")?;
        let [b, c, f, h, w] = *video.shape() else {
            return Err(Error::Shape { op: "vae encode", name: "video".into(), expected: "[B, C, F, H, W]".into(), got: video.shape().to_vec() });
        };
        if c != self.cfg.in_channels || b == 0 {
            return Err(Error::Shape { op: "vae encode", name: "video".into(), expected: format!("[B ≥ 1, {}, F, H, W]", self.cfg.in_channels), got: video.shape().to_vec() });
        }
        video.expect_contiguous("vae encode", "video")?;
        Ok(([b, f, h, w], self.latent_dims(f, h, w)?))
    }

    /// Input frames of latent frame `i`: (first, count).
    fn chunk_range(&self, i: usize) -> (usize, usize) {
        let st = self.cfg.scale_factor_temporal;
        if i == 0 {
            (0, 1)
        } else {
            (1 + st * (i - 1), st)
        }
    }

    /// The posterior's parameters (`quant_conv` output, mean | logvar unclamped) of `video`
    /// [B, C_in, F, H, W] (any float dtype, on the engine's device, values in [-1, 1]):
    /// [B, 2z, T', H/8, W/8] f32. `capture` sees every stage of every chunk (channels-last).
    pub fn encode(&self, engine: &Engine, video: &Tensor, mut capture: Option<&mut StageFn<'_>>) -> Result<Tensor> {
        let ([b, f, h, w], (tl, hl, wl)) = self.check_video(engine, video)?;
        let dev = engine.device().clone();
        let (plan, bufs) = self.encode_plan(f, h, w, &TilePlan::untiled(hl, wl))?;
        let arena = plan.allocate(&dev)?;
        let pool = Pool::new(&arena, &bufs.chunk.pool);
        let caches: Vec<Cache> = bufs.chunk.caches.iter().map(|&c| Cache::new(arena.get(c).clone())).collect();
        let attn = bufs.chunk.attn.as_ref().map(|a| AttnScratch::new(&arena, a));
        let (vcl, mcl) = (arena.get(bufs.video), arena.get(bufs.moments));
        let out = Tensor::empty_named(&dev, &[b, 2 * self.cfg.z_dim, tl, hl, wl], DType::F32, "vae moments")?;
        for s in 0..b {
            caches.iter().for_each(Cache::reset);
            let sample = video.narrow(0, s, 1)?;
            for i in 0..tl {
                let (start, len) = self.chunk_range(i);
                let x = vcl.narrow(1, 0, len)?;
                ops::to_channels_last_frames(&sample, start, &x)?;
                let cap = reborrow(&mut capture);
                engine.forward(|fw| {
                    let ctx = Ctx::new(fw, &pool, &caches, attn.as_ref(), cap);
                    let m = self.encoder.module.chunk(&ctx, Act::view(x.clone()))?;
                    if m.t.dim(1) != 1 {
                        return Err(Error::invalid(format!("vae encode: chunk {i} gave {} latent frames, 1 expected", m.t.dim(1))));
                    }
                    mcl.narrow(1, i, 1)?.copy_from(&m.t)
                })?;
            }
            ops::from_channels_last(mcl, None, &out.narrow(0, s, 1)?)?;
        }
        Ok(out)
    }

    /// [`Self::encode`] in the spatial tiles of `tiles` (made for this video's latent grid; untiled
    /// runs [`Self::encode`]): the same moments bit for bit. Tile by tile, every chunk of the video
    /// through the down part, each tile with its caches reset; then the latent part on whole latent
    /// frames. `capture` sees the down part's stages only untiled.
    pub fn encode_tiled(&self, engine: &Engine, video: &Tensor, tiles: &TilePlan, mut capture: Option<&mut StageFn<'_>>) -> Result<Tensor> {
        let ([b, f, h, w], (tl, hl, wl)) = self.check_video(engine, video)?;
        tiles.check(hl, wl)?;
        if tiles.is_untiled() {
            return self.encode(engine, video, capture);
        }
        let dev = engine.device().clone();
        let (plan, bufs) = self.encode_plan(f, h, w, tiles)?;
        let Some((down_out, down)) = &bufs.down else {
            return Err(Error::invalid("vae encode: a tiled plan without the down part's buffers"));
        };
        let arena = plan.allocate(&dev)?;
        let caches = |set: &[Buf]| -> Vec<Cache> { set.iter().map(|&c| Cache::new(arena.get(c).clone())).collect() };
        let (dpool, lpool) = (Pool::new(&arena, &down.pool), Pool::new(&arena, &bufs.chunk.pool));
        let (dcaches, lcaches) = (caches(&down.caches), caches(&bufs.chunk.caches));
        let attn = bufs.chunk.attn.as_ref().map(|a| AttnScratch::new(&arena, a));
        let (vcl, mcl, dout) = (arena.get(bufs.video), arena.get(bufs.moments), arena.get(*down_out));
        let out = Tensor::empty_named(&dev, &[b, 2 * self.cfg.z_dim, tl, hl, wl], DType::F32, "vae moments")?;
        let (ss, cin, cd) = (self.cfg.scale_factor_spatial, self.cfg.in_channels, dout.dim(4));
        let enc = &self.encoder.module;
        for s in 0..b {
            let sample = video.narrow(0, s, 1)?;
            for tile in &tiles.tiles {
                dcaches.iter().for_each(Cache::reset);
                let (wh, ww) = (tile.wy.len() * ss, tile.wx.len() * ss);
                for i in 0..tl {
                    let (start, len) = self.chunk_range(i);
                    let x = vcl.narrow(1, 0, len)?;
                    ops::to_channels_last_frames(&sample, start, &x)?;
                    // One forward per tile and chunk: a forward takes each unit once.
                    engine.forward(|fw| {
                        let crop = dpool.take(len, wh, ww, cin)?;
                        ops::copy_window(&x.narrow(2, tile.wy.start * ss, wh)?.narrow(3, tile.wx.start * ss, ww)?, &crop.t)?;
                        let y = enc.down_part(&Ctx::new(fw, &dpool, &dcaches, None, None), crop)?;
                        let want = [1, 1, tile.wy.len(), tile.wx.len(), cd];
                        if y.t.shape() != want {
                            return Err(Error::invalid(format!("vae encode: chunk {i} of a tile gave {:?}, {want:?} expected", y.t.shape())));
                        }
                        let (ih, iw) = (tile.y.len(), tile.x.len());
                        let inner = y.t.narrow(2, tile.y.start - tile.wy.start, ih)?.narrow(3, tile.x.start - tile.wx.start, iw)?;
                        ops::copy_window(&inner, &dout.narrow(1, i, 1)?.narrow(2, tile.y.start, ih)?.narrow(3, tile.x.start, iw)?)
                    })?;
                }
            }
            lcaches.iter().for_each(Cache::reset);
            for i in 0..tl {
                let cap = reborrow(&mut capture);
                engine.forward(|fw| {
                    let ctx = Ctx::new(fw, &lpool, &lcaches, attn.as_ref(), cap);
                    let m = enc.latent_part(&ctx, Act::view(dout.narrow(1, i, 1)?))?;
                    if m.t.dim(1) != 1 {
                        return Err(Error::invalid(format!("vae encode: latent frame {i} gave {} latent frames, 1 expected", m.t.dim(1))));
                    }
                    mcl.narrow(1, i, 1)?.copy_from(&m.t)
                })?;
            }
            ops::from_channels_last(mcl, None, &out.narrow(0, s, 1)?)?;
        }
        Ok(out)
    }
}
