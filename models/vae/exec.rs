//! What a VAE chunk runs with: the activation pool (a few equal regions of the arena, handed out as
//! channels-last [1, T, H, W, C] views and returned on drop), the causal feature caches (diffusers'
//! `feat_cache`, consumed in module order as its `feat_idx` counts), the attention scratch, and the
//! walk that sizes all of them for an input shape without a GPU.
//!
//! The model runs one sample at a time (every op of the VAE is per sample), so activations are
//! [1, T, H, W, C]: a frame range of one is contiguous, and a cache's valid frames are a prefix.

use std::cell::{Cell, RefCell};

use wanrt_runtime::arena::{Arena, ArenaPlan, Buf};
use wanrt_runtime::offload::Forward;
use wanrt_runtime::{DType, Error, Result, Tensor};

/// Frames a causal conv's cache keeps (diffusers `CACHE_T`).
pub const CACHE_T: usize = 2;

/// Pool activations one module holds at once: a residual block its input (or, once its normed input
/// is made, its shortcut), the normed input and conv1's output; the attention its input, the normed
/// input and its output.
pub const MODULE_SLOTS: usize = 3;

/// Activation regions of a pool that also keeps one activation across forwards: the decoder's tail
/// holds its chunk (`WanDecoder3d::tail_chunk`'s output) while the frames of it run (decode.rs). The
/// encoder's pools keep none (its frames gather outside the pool, encode.rs): [`MODULE_SLOTS`].
pub const POOL_SLOTS: usize = MODULE_SLOTS + 1;

/// Query rows per attention score block: bounds the f32 score matrix to this many elements.
pub const SCORE_ELEMS: usize = 1 << 24;

/// Sizes a chunk's buffers by walking the modules in forward order (each module's `plan` beside its
/// `forward`): the current activation shape, the largest pool tensor, and the caches in `feat_idx` order.
#[derive(Clone, Debug)]
pub struct Walk {
    /// Current activation (T, H, W, C).
    pub t: usize,
    pub h: usize,
    pub w: usize,
    pub c: usize,
    /// Whether the chunk is the first (downsample3d/upsample3d skip their time_conv on it).
    pub first: bool,
    /// Largest pool tensor, in elements.
    pub max_elems: usize,
    /// Cache slots: (frames, H, W, C).
    pub caches: Vec<[usize; 4]>,
    /// Attention: the largest H·W and its width.
    pub attn: Option<(usize, usize)>,
    /// Multiply-adds × 2 of the walked chunk's convs and attention (every tap counted, as the kernels
    /// compute zero padding too): the benchmark's FLOPs and the tiling planner's cost.
    pub flops: f64,
    /// Whether the decoder's tail runs frame by frame (see [`Ctx::stream`]): the walk then follows one
    /// frame from where the frames go one at a time, and its spatial upsamplers in row bands.
    pub stream: bool,
    /// How many times the walked activations run (the frames of the chunk, once the walk follows
    /// one of them): FLOPs count every run.
    pub reps: usize,
}

impl Walk {
    pub fn new(t: usize, h: usize, w: usize, c: usize, first: bool) -> Walk {
        Walk { t, h, w, c, first, max_elems: t * h * w * c, caches: Vec::new(), attn: None, flops: 0.0, stream: false, reps: 1 }
    }

    /// The same walk for the decoder's tail (or the encoder's frames part) run frame by frame
    /// (`stream`) or on whole chunks.
    pub fn streamed(self, stream: bool) -> Walk {
        Walk { stream, ..self }
    }

    /// From here on the frames of the current activation run one at a time: the walk follows one.
    pub fn one_frame_at_a_time(&mut self) {
        self.reps *= self.t;
        self.t = 1;
    }

    /// A conv with `positions` output positions, `taps` kernel taps, `cin` → `cout` channels.
    pub fn conv(&mut self, positions: usize, taps: usize, cin: usize, cout: usize) {
        self.flops += self.reps as f64 * 2.0 * positions as f64 * taps as f64 * cin as f64 * cout as f64;
    }

    /// A pool tensor of (t, h, w, c).
    pub fn take(&mut self, t: usize, h: usize, w: usize, c: usize) {
        self.max_elems = self.max_elems.max(t * h * w * c);
    }

    /// A cache slot for the current (H, W) with `c` channels and `frames` frames.
    pub fn cache(&mut self, frames: usize, c: usize) {
        self.caches.push([frames, self.h, self.w, c]);
    }

    /// The current activation becomes (t, h, w, c), taken from the pool.
    pub fn set(&mut self, t: usize, h: usize, w: usize, c: usize) {
        self.take(t, h, w, c);
        (self.t, self.h, self.w, self.c) = (t, h, w, c);
    }
}

/// An activation: a pool view (its slot returned on drop) or a view of another buffer.
pub struct Act<'p> {
    pool: Option<&'p Pool>,
    slot: usize,
    pub t: Tensor,
}

impl Drop for Act<'_> {
    fn drop(&mut self) {
        if let Some(p) = self.pool {
            p.busy.borrow_mut()[self.slot] = false;
        }
    }
}

impl<'p> Act<'p> {
    /// A view of a buffer outside the pool (the input chunk).
    pub fn view(t: Tensor) -> Act<'p> {
        Act { pool: None, slot: 0, t }
    }
    /// (T, H, W, C) of a [1, T, H, W, C] activation.
    pub fn dims(&self) -> (usize, usize, usize, usize) {
        let s = self.t.shape();
        (s[1], s[2], s[3], s[4])
    }
}

/// Equal 1-D regions ([`POOL_SLOTS`] or [`MODULE_SLOTS`] of them), each lent whole as one activation.
pub struct Pool {
    slots: Vec<Tensor>,
    busy: RefCell<Vec<bool>>,
}

/// Bytes of `elems` elements of `dt`, rounded up to the arena's 256-byte charge, so that views placed
/// one after another in a region stay as aligned as buffers of their own.
pub fn region_bytes(elems: usize, dt: DType) -> u64 {
    ((elems * dt.size()) as u64).div_ceil(256) * 256
}

impl Pool {
    /// Bytes of a pool of `slots` `elems`-element regions placed in a shared region ([`Self::plan_in`]).
    pub fn bytes(slots: usize, elems: usize, dt: DType) -> u64 {
        slots as u64 * region_bytes(elems, dt)
    }

    /// The pool's `slots` regions as views of `region` from byte `offset` on ([`Self::bytes`] of
    /// them), for a pool whose lifetime does not overlap that of the region's other views.
    pub fn plan_in(a: &mut ArenaPlan, region: Buf, offset: u64, slots: usize, elems: usize, dt: DType) -> Vec<Buf> {
        (0..slots).map(|i| a.view(region, offset + i as u64 * region_bytes(elems, dt), &[elems], dt)).collect()
    }

    pub fn new(arena: &Arena, bufs: &[Buf]) -> Pool {
        Pool { slots: bufs.iter().map(|&b| arena.get(b).clone()).collect(), busy: RefCell::new(vec![false; bufs.len()]) }
    }

    /// A free region viewed as [1, t, h, w, c].
    pub fn take(&self, t: usize, h: usize, w: usize, c: usize) -> Result<Act<'_>> {
        let n = t * h * w * c;
        let mut busy = self.busy.borrow_mut();
        let slot = busy.iter().position(|b| !b).ok_or_else(|| Error::invalid("vae: activation pool exhausted (a module holds more activations than planned)"))?;
        let region = &self.slots[slot];
        if n > region.dim(0) {
            return Err(Error::invalid(format!("vae: activation [1, {t}, {h}, {w}, {c}] exceeds the planned {} elements", region.dim(0))));
        }
        busy[slot] = true;
        let t = region.narrow(0, 0, n)?.reshape(&[1, t, h, w, c])?;
        Ok(Act { pool: Some(self), slot, t })
    }
}

/// One causal conv's (or resampler's) feature cache: up to [`CACHE_T`] frames of its input, and
/// whether it has seen a chunk (diffusers' `feat_cache[idx] is None` / `"Rep"`). The planned buffer
/// is sized for the largest window it serves; a tiled decode's smaller edge tiles use its front part
/// (the frame size is fixed from the first push after a reset).
pub struct Cache {
    store: Tensor,
    dims: Cell<Option<(usize, usize, usize)>>,
    len: Cell<usize>,
    started: Cell<bool>,
}

impl Cache {
    pub fn new(buf: Tensor) -> Cache {
        Cache { store: buf, dims: Cell::new(None), len: Cell::new(0), started: Cell::new(false) }
    }
    pub fn reset(&self) {
        self.len.set(0);
        self.dims.set(None);
        self.started.set(false);
    }
    pub fn started(&self) -> bool {
        self.started.get()
    }
    pub fn start(&self) {
        self.started.set(true);
    }
    pub fn len(&self) -> usize {
        self.len.get()
    }
    pub fn is_empty(&self) -> bool {
        self.len.get() == 0
    }
    /// The cached frames, oldest first ([1, len, H, W, C]), or None.
    pub fn frames(&self) -> Result<Option<Tensor>> {
        match (self.len.get(), self.dims.get()) {
            (0, _) | (_, None) => Ok(None),
            (n, Some(d)) => Ok(Some(self.buf(d)?.narrow(1, 0, n)?)),
        }
    }

    /// The buffer as [1, F, h, w, c] frames, F the planned frame count (CACHE_T, or 1 for a
    /// downsampler's cache).
    fn buf(&self, (h, w, c): (usize, usize, usize)) -> Result<Tensor> {
        let f = self.store.dim(1);
        self.store.reshape(&[self.store.numel() as usize])?.narrow(0, 0, f * h * w * c)?.reshape(&[1, f, h, w, c])
    }

    /// The buffer for frames like `x`: of the planned capacity, the dtype, and the frame size of the
    /// frames already held.
    fn check(&self, x: &Tensor) -> Result<Tensor> {
        let s = x.shape();
        let refuse = || Error::invalid(format!("vae: cache {:?} (frames {:?}) cannot hold frames of {x:?}", self.store, self.dims.get()));
        if s.len() != 5 || s[0] != 1 || x.dtype() != self.store.dtype() || (self.store.dim(1) * s[2] * s[3] * s[4]) as u64 > self.store.numel() {
            return Err(refuse());
        }
        let d = (s[2], s[3], s[4]);
        match self.dims.get() {
            Some(held) if held != d && self.len.get() > 0 => return Err(refuse()),
            _ => self.dims.set(Some(d)),
        }
        self.buf(d)
    }

    /// After a causal conv read this cache and `x`: keep the last two frames of [cache ; x]
    /// (diffusers: `x[:, :, -CACHE_T:]`, with the previous last frame in front of a one-frame chunk).
    pub fn push(&self, x: &Tensor) -> Result<()> {
        let buf = self.check(x)?;
        let t = x.dim(1);
        let frame = |i: usize| buf.narrow(1, i, 1);
        if t >= CACHE_T {
            buf.narrow(1, 0, CACHE_T)?.copy_from(&x.narrow(1, t - CACHE_T, CACHE_T)?)?;
            self.len.set(CACHE_T);
        } else if t == 1 {
            match self.len.get() {
                0 => {
                    frame(0)?.copy_from(x)?;
                    self.len.set(1);
                }
                1 => {
                    frame(1)?.copy_from(x)?;
                    self.len.set(2);
                }
                _ => {
                    frame(0)?.copy_from(&frame(1)?)?;
                    frame(1)?.copy_from(x)?;
                }
            }
        }
        self.started.set(true);
        Ok(())
    }

    /// Keeps only `x`'s last frame (downsample3d's cache).
    pub fn keep_last(&self, x: &Tensor) -> Result<()> {
        let buf = self.check(x)?;
        let t = x.dim(1);
        if t == 0 {
            return Err(Error::invalid("vae: an empty chunk reached a temporal downsampler"));
        }
        buf.narrow(1, 0, 1)?.copy_from(&x.narrow(1, t - 1, 1)?)?;
        self.len.set(1);
        self.started.set(true);
        Ok(())
    }
}

/// The mid-block attention's per-frame scratch. In f32 everything stays f32; in bf16/f16 q, k, v and
/// the probabilities are in the compute dtype with f32 scores and f32 accumulation, as diffusers'
/// `F.scaled_dot_product_attention` on bf16 tensors computes (`WanAttentionBlock.forward`), on
/// tensor cores.
pub struct AttnScratch {
    /// q, k, v in the compute dtype ([3 · H·W · C] elements).
    pub qkv: Tensor,
    /// Output rows in the compute dtype ([H·W · C]).
    pub o: Tensor,
    /// One block of scores ([rows · H·W], f32).
    pub scores: Tensor,
    /// The block's probabilities in the compute dtype (bf16/f16 only; f32 normalizes `scores` in place).
    pub p: Option<Tensor>,
}

pub struct AttnBufs {
    qkv: Buf,
    o: Buf,
    scores: Buf,
    p: Option<Buf>,
}

/// Query rows per score block for `hw` keys.
pub fn score_rows(hw: usize) -> usize {
    (SCORE_ELEMS / hw.max(1)).clamp(1, hw.max(1))
}

impl AttnScratch {
    /// The scratch's buffers (elements, dtype) in the order [`Self::plan_in`] places them: qkv, o,
    /// scores, then p where the dtype is not f32.
    fn parts(hw: usize, c: usize, dt: DType) -> Vec<(usize, DType)> {
        let mut parts = vec![(3 * hw * c, dt), (hw * c, dt), (score_rows(hw) * hw, DType::F32)];
        if dt != DType::F32 {
            parts.push((score_rows(hw) * hw, dt));
        }
        parts
    }

    /// Bytes of the scratch placed in a shared region ([`Self::plan_in`]).
    pub fn bytes(hw: usize, c: usize, dt: DType) -> u64 {
        Self::parts(hw, c, dt).iter().map(|&(n, d)| region_bytes(n, d)).sum()
    }

    /// The scratch as views of `region` from byte `offset` on ([`Self::bytes`] of them).
    pub fn plan_in(a: &mut ArenaPlan, region: Buf, offset: u64, hw: usize, c: usize, dt: DType) -> AttnBufs {
        let mut at = offset;
        let bufs: Vec<Buf> = Self::parts(hw, c, dt)
            .into_iter()
            .map(|(n, d)| {
                let b = a.view(region, at, &[n], d);
                at += region_bytes(n, d);
                b
            })
            .collect();
        AttnBufs { qkv: bufs[0], o: bufs[1], scores: bufs[2], p: bufs.get(3).copied() }
    }

    pub fn new(arena: &Arena, b: &AttnBufs) -> AttnScratch {
        let g = |x: Buf| arena.get(x).clone();
        AttnScratch { qkv: g(b.qkv), o: g(b.o), scores: g(b.scores), p: b.p.map(g) }
    }
}

/// A stage output observer: (module path as diffusers names it, channels-last [1, T, H, W, C]).
pub type StageFn<'c> = dyn FnMut(&str, &Tensor) -> Result<()> + 'c;

/// A capture as one chunk's [`Ctx`] holds it.
pub type Capture<'c> = &'c mut StageFn<'c>;

/// A shorter-lived reborrow of a caller's capture, for one chunk's [`Ctx`].
pub fn reborrow<'x>(c: &'x mut Option<&mut StageFn<'_>>) -> Option<Capture<'x>> {
    match c {
        Some(f) => Some(&mut **f),
        None => None,
    }
}

/// One chunk's execution context. `'p` is the arena's (pools, caches, scratch: activations may outlive one forward), `'a` the
/// forward's.
pub struct Ctx<'p, 'a, 'e, 'c> {
    pub fw: &'a Forward<'e>,
    pub pool: &'p Pool,
    pub caches: &'p [Cache],
    pub next: Cell<usize>,
    pub attn: Option<&'p AttnScratch>,
    pub capture: RefCell<Option<Capture<'c>>>,
    /// The decoder's tail running frame by frame (decode.rs): the spatial upsamplers then work in
    /// row bands (`WanResample::band_rows`), so no tensor is larger than one output frame.
    pub stream: bool,
}

impl<'p, 'a, 'e, 'c> Ctx<'p, 'a, 'e, 'c> {
    pub fn new(fw: &'a Forward<'e>, pool: &'p Pool, caches: &'p [Cache], attn: Option<&'p AttnScratch>, capture: Option<Capture<'c>>) -> Self {
        Ctx { fw, pool, caches, next: Cell::new(0), attn, capture: RefCell::new(capture), stream: false }
    }

    /// With [`Self::stream`] set to `on`.
    pub fn streaming(mut self, on: bool) -> Self {
        self.stream = on;
        self
    }

    /// Taking caches from slot `next` on: a later forward over the same chunk, where an earlier one
    /// stopped.
    pub fn caches_from(self, next: usize) -> Self {
        self.next.set(next);
        self
    }
}

impl Ctx<'_, '_, '_, '_> {
    /// The next cache slot (diffusers' `feat_cache[feat_idx[0]]`, then `feat_idx[0] += 1`).
    pub fn next_cache(&self) -> Result<&Cache> {
        let i = self.next.get();
        self.next.set(i + 1);
        self.caches.get(i).ok_or_else(|| Error::invalid(format!("vae: cache slot {i} was not planned ({} planned)", self.caches.len())))
    }

    pub fn capture(&self, name: &str, t: &Tensor) -> Result<()> {
        match self.capture.borrow_mut().as_mut() {
            Some(f) => f(name, t),
            None => Ok(()),
        }
    }
}
