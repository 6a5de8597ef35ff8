//! `AutoencoderKLWan` encode (diffusers `_encode`: frame 0, then 4 frames at a time through the causal
//! feature cache), untiled or in exact spatial tiles, and the planner that picks tiles for a budget.
//!
//! A chunk runs in two parts, in forwards of their own. The frames part (`WanEncoder3d::down_frames`:
//! conv_in through the first temporal downsampler's spatial conv, at full and half resolution,
//! where the largest activations are) goes one input frame at a time by default
//! ([`TilePlan::stream`]), its outputs gathered into the chunk at quarter resolution; the chunk part
//! (`WanEncoder3d::down_chunk`, that downsampler's time_conv and the blocks after it) runs on the
//! whole chunk. The largest activation is then one frame where it was four, and the moments are the
//! same bit for bit (`WanEncoder3d::down_frames` says why). Neither part keeps an activation for
//! the other, so their pools share one region.
//!
//! Tiled, the encoder splits as the decoder does (tiling.rs), the other way round: the down part
//! (both parts above, everything through the last downsampler) runs tile by tile, each window grown
//! by `down_radius` (a halo of 6 latent pixels for Wan2.1) and aligned to whole latent pixels so
//! every stride-2 conv samples the same grid as untiled; only each tile's interior is kept, in a
//! whole-video buffer at latent resolution. The latent part (the blocks after the last downsampler,
//! the mid block with its frame-global attention, the head, `quant_conv`) then runs on whole latent
//! frames. Each tile runs every chunk with its own caches before the next starts (one cache set on
//! the device); the result equals the untiled encode bit for bit.

use wanrt_runtime::arena::{Arena, ArenaPlan, Buf};
use wanrt_runtime::offload::{fmt_bytes, Engine, Forward};
use wanrt_runtime::ops;
use wanrt_runtime::{DType, Error, Result, Tensor};

use super::exec::{reborrow, Act, AttnBufs, AttnScratch, Cache, Capture, Ctx, Pool, StageFn, Walk, MODULE_SLOTS};
use super::model::AutoencoderKLWan;
use super::tiling::{counts, Tile, TilePlan};

/// A part's buffers: its pool and attention scratch (views of the region the parts share) and its
/// caches.
struct PartBufs {
    pool: Vec<Buf>,
    caches: Vec<Buf>,
    attn: Option<AttnBufs>,
}

/// Encode's buffers: the input frames one forward of the frames part takes (channels-last: one
/// frame, or a whole chunk without [`TilePlan::stream`]), the moments, the frames part's buffers and
/// the chunk its outputs gather in (`gathered`, 1-D: a smaller window's or the first chunk's frames
/// are its front part), the chunk part's buffers (untiled, through `quant_conv`; tiled, through the
/// last downsampler, on a window); tiled, also the down part's output for the whole video and the
/// latent part's buffers on whole frames.
struct EncodeBufs {
    video: Buf,
    moments: Buf,
    frames: PartBufs,
    gathered: Buf,
    chunk: PartBufs,
    latent: Option<(Buf, PartBufs)>,
}

/// The buffers of parts that run one after another, none keeping an activation for the next
/// (`walks`, in order): one region holds each part's pool from its start and its attention scratch
/// after the pool, so it is as large as the largest part's; the caches are buffers of their own.
fn plan_parts<const N: usize>(a: &mut ArenaPlan, walks: [&Walk; N], dt: DType) -> [PartBufs; N] {
    let pool_bytes = |w: &Walk| Pool::bytes(MODULE_SLOTS, w.max_elems, dt);
    let attn_bytes = |w: &Walk| w.attn.map_or(0, |(hw, c)| AttnScratch::bytes(hw, c, dt));
    let bytes = walks.iter().map(|w| pool_bytes(w) + attn_bytes(w)).max().unwrap_or(0);
    let region = a.buffer("vae activations", &[(bytes / dt.size() as u64) as usize], dt);
    walks.map(|w| PartBufs {
        pool: Pool::plan_in(a, region, 0, MODULE_SLOTS, w.max_elems, dt),
        caches: w.caches.iter().map(|&[t, h, wd, c]| a.buffer("vae feature cache", &[1, t, h, wd, c], dt)).collect(),
        attn: w.attn.map(|(hw, c)| AttnScratch::plan_in(a, region, pool_bytes(w), hw, c, dt)),
    })
}

/// A part on the allocated arena.
struct Part {
    pool: Pool,
    caches: Vec<Cache>,
    attn: Option<AttnScratch>,
}

impl Part {
    fn new(arena: &Arena, b: &PartBufs) -> Part {
        let caches = b.caches.iter().map(|&c| Cache::new(arena.get(c).clone())).collect();
        Part { pool: Pool::new(arena, &b.pool), caches, attn: b.attn.as_ref().map(|s| AttnScratch::new(arena, s)) }
    }

    fn reset(&self) {
        self.caches.iter().for_each(Cache::reset);
    }

    /// A forward's context over this part's pool, caches and scratch.
    fn ctx<'p, 'a, 'e, 'c>(&'p self, fw: &'a Forward<'e>, capture: Option<Capture<'c>>) -> Ctx<'p, 'a, 'e, 'c> {
        Ctx::new(fw, &self.pool, &self.caches, self.attn.as_ref(), capture)
    }
}

/// [`EncodeBufs`] on the allocated arena (`stream`: the frames part one frame per forward).
struct EncodeRun {
    video: Tensor,
    moments: Tensor,
    frames: Part,
    gathered: Tensor,
    stream: bool,
    chunk: Part,
    latent: Option<(Tensor, Part)>,
}

impl EncodeRun {
    fn new(arena: &Arena, b: &EncodeBufs, stream: bool) -> EncodeRun {
        let get = |x: Buf| arena.get(x).clone();
        EncodeRun {
            video: get(b.video),
            moments: get(b.moments),
            frames: Part::new(arena, &b.frames),
            gathered: get(b.gathered),
            stream,
            chunk: Part::new(arena, &b.chunk),
            latent: b.latent.as_ref().map(|(d, l)| (get(*d), Part::new(arena, l))),
        }
    }

    /// `gathered`'s front part as [1, n, h, w, c].
    fn gathered(&self, [n, h, w, c]: [usize; 4]) -> Result<Tensor> {
        let elems = n * h * w * c;
        if elems > self.gathered.dim(0) {
            return Err(Error::invalid(format!("vae encode: {n} frames of {h}x{w}x{c} exceed the planned chunk of {} elements", self.gathered.dim(0))));
        }
        self.gathered.narrow(0, 0, elems)?.reshape(&[1, n, h, w, c])
    }
}

/// A tile's window (latent pixels, `ss` input pixels each) of the channels-last frames `x`, copied
/// into the pool.
fn crop<'p>(pool: &'p Pool, x: &Tensor, tile: &Tile, ss: usize) -> Result<Act<'p>> {
    let (wh, ww) = (tile.wy.len() * ss, tile.wx.len() * ss);
    let out = pool.take(x.dim(1), wh, ww, x.dim(4))?;
    ops::copy_window(&x.narrow(2, tile.wy.start * ss, wh)?.narrow(3, tile.wx.start * ss, ww)?, &out.t)?;
    Ok(out)
}

/// Writes latent frame `i`'s moments `m` ([1, 1, h, w, 2z]) into `moments`.
fn put_moments(moments: &Tensor, i: usize, m: &Act<'_>) -> Result<()> {
    if m.t.dim(1) != 1 {
        return Err(Error::invalid(format!("vae encode: chunk {i} gave {} latent frames, 1 expected", m.t.dim(1))));
    }
    moments.narrow(1, i, 1)?.copy_from(&m.t)
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

    /// The walk of one encode chunk on whole chunks (tests): the first (1 frame) when the video has
    /// 1 frame, else a 4-frame one (every buffer is at least as large for it).
    #[cfg(test)]
    pub(crate) fn encode_walk(&self, frames: usize, h: usize, w: usize) -> Walk {
        let mut walk = Walk::new(self.chunk_frames(frames), h, w, self.cfg.in_channels, frames == 1);
        self.encoder.module.plan(&mut walk);
        walk
    }

    /// The frames part's walk of the largest chunk for (hp, wp) input pixels (a tile's window, or
    /// the frame), one frame at a time with `stream`.
    fn frames_walk(&self, frames: usize, hp: usize, wp: usize, stream: bool) -> Walk {
        let mut walk = Walk::new(self.chunk_frames(frames), hp, wp, self.cfg.in_channels, frames == 1).streamed(stream);
        self.encoder.module.plan_frames(&mut walk);
        walk
    }

    /// The chunk part's walk on the whole chunk `frames` gathers: the rest of the down part, then
    /// with `latent` (untiled) the latent part.
    fn chunk_walk(&self, frames: &Walk, latent: bool) -> Walk {
        let mut walk = Walk::new(frames.t * frames.reps, frames.h, frames.w, frames.c, frames.first);
        self.encoder.module.plan_down_chunk(&mut walk);
        if latent {
            self.encoder.module.plan_latent(&mut walk);
        }
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
        let (dt, ss) = (self.encoder.dtype, self.cfg.scale_factor_spatial);
        let (wh, ww) = tiles.max_window();
        let fw = self.frames_walk(frames, wh * ss, ww * ss, tiles.stream);
        let cw = self.chunk_walk(&fw, tiles.is_untiled());
        let mut a = ArenaPlan::new();
        // The input frames of one forward, converted as they are needed: a whole 81-frame 720p video
        // channels-last would be 0.9 GB more in fp32.
        let video = a.buffer("vae encode input frames (channels-last)", &[1, fw.t, h, w, self.cfg.in_channels], dt);
        let moments = a.buffer("vae moments (channels-last)", &[1, tl, hl, wl, 2 * self.cfg.z_dim], dt);
        let gathered = a.buffer("vae encoder chunk at the stream block (channels-last)", &[fw.t * fw.reps * fw.h * fw.w * fw.c], dt);
        if tiles.is_untiled() {
            let [frames, chunk] = plan_parts(&mut a, [&fw, &cw], dt);
            return Ok((a, EncodeBufs { video, moments, frames, gathered, chunk, latent: None }));
        }
        let lw = self.enc_latent_walk(&cw, hl, wl);
        let down_out = a.buffer("vae encoder down part output (tiled)", &[1, tl, hl, wl, cw.c], dt);
        let [frames, chunk, latent] = plan_parts(&mut a, [&fw, &cw, &lw], dt);
        Ok((a, EncodeBufs { video, moments, frames, gathered, chunk, latent: Some((down_out, latent)) }))
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
    /// with a `budget`, the plan of least down-part work (its windows' area, times
    /// [`super::tiling::STREAM_COST`] frame by frame) among those whose arena plus `overhead` (weights,
    /// workspace, input and output) fits, each grid in both layouts; without either, untiled on whole
    /// chunks. The tiles
    /// run one at a time (group 1). A budget too small for any tiling is an error naming the least
    /// that works.
    pub fn plan_encode_tiles(&self, frames: usize, h: usize, w: usize, budget: Option<u64>, overhead: u64, tile: Option<usize>) -> Result<TilePlan> {
        let candidates = self.encode_candidates(frames, h, w, budget.is_some(), tile)?;
        let avail = budget.map(|b| b.saturating_sub(overhead));
        // The down part's FLOPs are proportional to the windows' area.
        // Untiled first where it fits (tiles add launches and smaller GEMMs the area does not count).
        let cost = |plan: &TilePlan| plan.window_area() as f64 * plan.layout_cost();
        let best = candidates
            .iter()
            .filter(|(_, bytes)| avail.is_none_or(|a| *bytes <= a))
            .min_by(|(p, b), (q, c)| q.is_untiled().cmp(&p.is_untiled()).then(cost(p).total_cmp(&cost(q))).then(b.cmp(c)));
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
        let mut candidates = Vec::with_capacity(2 * shapes.len());
        for (rows, cols) in shapes {
            for plan in TilePlan::grid(hl, wl, rows, cols, self.encode_halo(), 1)?.layouts() {
                let bytes = self.encode_tiled_bytes(frames, h, w, &plan)?;
                candidates.push((plan, bytes));
            }
        }
        Ok(candidates)
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
    /// [B, 2z, T', H/8, W/8] f32. `capture` sees every stage of every chunk (channels-last; the
    /// frames part's stages frame by frame).
    pub fn encode(&self, engine: &Engine, video: &Tensor, capture: Option<&mut StageFn<'_>>) -> Result<Tensor> {
        let (_, (_, hl, wl)) = self.check_video(engine, video)?;
        self.encode_tiled(engine, video, &TilePlan::untiled(hl, wl), capture)
    }

    /// [`Self::encode`] in the spatial tiles of `tiles` (made for this video's latent grid; untiled,
    /// [`Self::encode`] itself, or with [`TilePlan::whole_chunks`] its frames part on whole chunks):
    /// the same moments bit for bit. Tiled, tile by tile, every chunk of the video through the down
    /// part, each tile with its caches reset; then the latent part on whole latent frames. `capture`
    /// sees the down part's stages only untiled.
    pub fn encode_tiled(&self, engine: &Engine, video: &Tensor, tiles: &TilePlan, mut capture: Option<&mut StageFn<'_>>) -> Result<Tensor> {
        let ([b, f, h, w], (tl, hl, wl)) = self.check_video(engine, video)?;
        let dev = engine.device().clone();
        let (plan, bufs) = self.encode_plan(f, h, w, tiles)?;
        let arena = plan.allocate(&dev)?;
        let run = EncodeRun::new(&arena, &bufs, tiles.stream);
        let out = Tensor::empty_named(&dev, &[b, 2 * self.cfg.z_dim, tl, hl, wl], DType::F32, "vae moments")?;
        for s in 0..b {
            let sample = video.narrow(0, s, 1)?;
            match &run.latent {
                None => self.encode_untiled(engine, &run, &sample, &mut capture)?,
                Some((down_out, latent)) => {
                    for tile in &tiles.tiles {
                        self.down_tile(engine, &run, &sample, tile, down_out)?;
                    }
                    self.encode_latent(engine, &run, (down_out, latent), &mut capture)?;
                }
            }
            ops::from_channels_last(&run.moments, None, &out.narrow(0, s, 1)?)?;
        }
        Ok(out)
    }

    /// One sample untiled: each chunk through the frames part, then the rest of the encoder on the
    /// gathered chunk (one forward), its latent frame into the moments.
    fn encode_untiled(&self, engine: &Engine, run: &EncodeRun, sample: &Tensor, capture: &mut Option<&mut StageFn<'_>>) -> Result<()> {
        run.frames.reset();
        run.chunk.reset();
        let enc = &self.encoder.module;
        for i in 0..run.moments.dim(1) {
            let x = self.run_frames(engine, run, sample, i, None, capture)?;
            let cap = reborrow(capture);
            engine.forward(|fw| {
                let ctx = run.chunk.ctx(fw, cap);
                let y = enc.down_chunk(&ctx, Act::view(x))?;
                put_moments(&run.moments, i, &enc.latent_part(&ctx, y)?)
            })?;
        }
        Ok(())
    }

    /// Chunk `i` of `sample` ([1, C, F, H, W]) through the frames part (`WanEncoder3d::down_frames`),
    /// cropped to `tile`'s window if given: one input frame per forward with `run.stream` (the caches
    /// carried from each to the next), else the whole chunk in one; each forward's output copied in
    /// order into the gathered chunk, returned as [1, n, h, w, C].
    fn run_frames(&self, engine: &Engine, run: &EncodeRun, sample: &Tensor, i: usize, tile: Option<&Tile>, capture: &mut Option<&mut StageFn<'_>>) -> Result<Tensor> {
        let (start, len) = self.chunk_range(i);
        let step = if run.stream { 1 } else { len };
        let mut dims = [0; 3];
        for f in (0..len).step_by(step) {
            let x = run.video.narrow(1, 0, step)?;
            ops::to_channels_last_frames(sample, start + f, &x)?;
            let cap = reborrow(capture);
            dims = engine.forward(|fw| {
                let ctx = run.frames.ctx(fw, cap);
                let input = match tile {
                    Some(t) => crop(&run.frames.pool, &x, t, self.cfg.scale_factor_spatial)?,
                    None => Act::view(x.clone()),
                };
                let y = self.encoder.module.down_frames(&ctx, input)?;
                let (n, h, w, c) = y.dims();
                if n != step {
                    return Err(Error::invalid(format!("vae encode: the frames part gave {n} frames for {step} (chunk {i})")));
                }
                run.gathered([len, h, w, c])?.narrow(1, f, n)?.copy_from(&y.t)?;
                Ok([h, w, c])
            })?;
        }
        let [h, w, c] = dims;
        run.gathered([len, h, w, c])
    }

    /// One tile of one sample through the down part, chunk by chunk, with its caches reset first:
    /// the interior of each latent frame into `down_out`. One forward per part and chunk (a forward
    /// takes each unit once).
    fn down_tile(&self, engine: &Engine, run: &EncodeRun, sample: &Tensor, tile: &Tile, down_out: &Tensor) -> Result<()> {
        run.frames.reset();
        run.chunk.reset();
        let cd = down_out.dim(4);
        for i in 0..down_out.dim(1) {
            let x = self.run_frames(engine, run, sample, i, Some(tile), &mut None)?;
            engine.forward(|fw| {
                let y = self.encoder.module.down_chunk(&run.chunk.ctx(fw, None), Act::view(x))?;
                let want = [1, 1, tile.wy.len(), tile.wx.len(), cd];
                if y.t.shape() != want {
                    return Err(Error::invalid(format!("vae encode: chunk {i} of a tile gave {:?}, {want:?} expected", y.t.shape())));
                }
                let (ih, iw) = (tile.y.len(), tile.x.len());
                let inner = y.t.narrow(2, tile.y.start - tile.wy.start, ih)?.narrow(3, tile.x.start - tile.wx.start, iw)?;
                ops::copy_window(&inner, &down_out.narrow(1, i, 1)?.narrow(2, tile.y.start, ih)?.narrow(3, tile.x.start, iw)?)
            })?;
        }
        Ok(())
    }

    /// The latent part on whole latent frames of the tiled down part's output, each frame's moments
    /// into the run's.
    fn encode_latent(&self, engine: &Engine, run: &EncodeRun, (down_out, latent): (&Tensor, &Part), capture: &mut Option<&mut StageFn<'_>>) -> Result<()> {
        latent.reset();
        for i in 0..down_out.dim(1) {
            let cap = reborrow(capture);
            engine.forward(|fw| {
                let m = self.encoder.module.latent_part(&latent.ctx(fw, cap), Act::view(down_out.narrow(1, i, 1)?))?;
                put_moments(&run.moments, i, &m)
            })?;
        }
        Ok(())
    }
}
