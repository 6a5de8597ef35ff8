//! `WanEncoder3d` (with the top-level `quant_conv`) and `WanDecoder3d` (with `post_quant_conv`), as
//! diffusers' autoencoder_kl_wan.py builds them; each runs one chunk per call (the caller walks the
//! chunks, `AutoencoderKLWan::encode` / `decode_with`). Stage outputs are offered to the capture
//! under the module paths `tools/fixtures/gen_vae.py` records.

use wanrt_runtime::offload::VarBuilder;
use wanrt_runtime::Result;

use super::config::VaeConfig;
use super::exec::{Act, Ctx, Walk};
use super::modules::{ConvUnit, Head, ResampleMode, WanMidBlock, WanResample, WanResidualBlock, WanUpBlock};

/// One entry of `WanEncoder3d.down_blocks`.
pub enum DownBlock {
    Res(WanResidualBlock),
    Resample(WanResample),
}

impl DownBlock {
    fn plan(&self, walk: &mut Walk) {
        match self {
            DownBlock::Res(r) => r.plan(walk),
            DownBlock::Resample(r) => r.plan(walk),
        }
    }

    fn forward<'p>(&self, ctx: &Ctx<'p, '_, '_, '_>, x: Act<'p>) -> Result<Act<'p>> {
        match self {
            DownBlock::Res(r) => r.forward(ctx, x),
            DownBlock::Resample(r) => r.forward(ctx, x),
        }
    }
}

/// `WanEncoder3d(z_dim = 2·z)` followed by `quant_conv`.
pub struct WanEncoder3d {
    pub conv_in: ConvUnit,
    pub down_blocks: Vec<DownBlock>,
    pub mid_block: WanMidBlock,
    pub head: Head,
    pub quant_conv: ConvUnit,
}

impl WanEncoder3d {
    /// Declares under `vb` (the model root): keys `encoder.*` and `quant_conv.*`, units in forward order.
    pub fn new(vb: &VarBuilder, cfg: &VaeConfig) -> WanEncoder3d {
        let e = vb.pp("encoder");
        let dims = cfg.dims_encoder();
        let conv_in = ConvUnit::new(&e.pp("conv_in"), cfg.in_channels, dims[0], 3);
        let mut down_blocks = Vec::new();
        let db = e.pp("down_blocks");
        for (i, w) in dims.windows(2).enumerate() {
            let mut cin = w[0];
            for _ in 0..cfg.num_res_blocks {
                down_blocks.push(DownBlock::Res(WanResidualBlock::new(&db.pp(down_blocks.len()), cin, w[1])));
                cin = w[1];
            }
            if i != cfg.dim_mult.len() - 1 {
                let mode = if cfg.temperal_downsample[i] { ResampleMode::Downsample3d } else { ResampleMode::Downsample2d };
                down_blocks.push(DownBlock::Resample(WanResample::new(&db.pp(down_blocks.len()), w[1], mode)));
            }
        }
        let top = *dims.last().unwrap_or(&cfg.base_dim);
        let mid_block = WanMidBlock::new(&e.pp("mid_block"), top);
        let head = Head::new(&e, top, 2 * cfg.z_dim);
        let quant_conv = ConvUnit::new(&vb.pp("quant_conv"), 2 * cfg.z_dim, 2 * cfg.z_dim, 1);
        WanEncoder3d { conv_in, down_blocks, mid_block, head, quant_conv }
    }

    pub fn plan(&self, walk: &mut Walk) {
        self.plan_down(walk);
        self.plan_latent(walk);
    }

    /// Plan of [`Self::down_frames`] then [`Self::down_chunk`] on whole chunks.
    pub fn plan_down(&self, walk: &mut Walk) {
        self.plan_frames(walk);
        self.plan_down_chunk(walk);
    }

    /// Plan of [`Self::down_frames`] (with `walk.stream`, on one frame at a time).
    pub fn plan_frames(&self, walk: &mut Walk) {
        if walk.stream {
            walk.one_frame_at_a_time();
        }
        self.conv_in.plan(walk);
        self.down_blocks[..self.frames_end()].iter().for_each(|b| b.plan(walk));
        if let Some((_, r)) = self.stream_block() {
            r.plan_spatial(walk);
        }
    }

    /// Plan of [`Self::down_chunk`].
    pub fn plan_down_chunk(&self, walk: &mut Walk) {
        if let Some((_, r)) = self.stream_block() {
            r.plan_time(walk);
        }
        self.down_blocks[self.chunk_start()..self.split()].iter().for_each(|b| b.plan(walk));
    }

    /// Plan of [`Self::latent_part`].
    pub fn plan_latent(&self, walk: &mut Walk) {
        for b in &self.down_blocks[self.split()..] {
            b.plan(walk);
        }
        self.mid_block.plan(walk);
        self.head.plan(walk);
        self.quant_conv.plan(walk);
    }

    /// Down blocks of the down part: up to and including the last resampler (0..=8 for Wan2.1); the
    /// blocks after it already run at latent resolution.
    fn split(&self) -> usize {
        self.down_blocks.iter().rposition(|b| matches!(b, DownBlock::Resample(_))).map_or(0, |i| i + 1)
    }

    /// The down block with the first temporal downsampler (down_blocks.5 for Wan2.1) and that
    /// downsampler, if the down part has one: every module before its time_conv maps frames one to
    /// one; the time_conv takes two frames (with the one cached) to one.
    fn stream_block(&self) -> Option<(usize, &WanResample)> {
        self.down_blocks[..self.split()].iter().enumerate().find_map(|(i, b)| match b {
            DownBlock::Resample(r) if r.mode == ResampleMode::Downsample3d => Some((i, r)),
            _ => None,
        })
    }

    /// Down blocks [`Self::down_frames`] runs whole: those before the stream block (the whole down
    /// part without one).
    fn frames_end(&self) -> usize {
        self.stream_block().map_or(self.split(), |(k, _)| k)
    }

    /// The first down block [`Self::down_chunk`] runs whole: the one after the stream block.
    fn chunk_start(&self) -> usize {
        self.stream_block().map_or(self.split(), |(k, _)| k + 1)
    }

    /// How much smaller the down part's output is than its input (8 for Wan2.1).
    pub fn down_scale(&self) -> usize {
        self.down_blocks[..self.split()].iter().map(|b| if let DownBlock::Resample(r) = b { r.resample.stride.1 } else { 1 }).product()
    }

    /// The down part's spatial receptive radius in input pixels: an output pixel depends on the input
    /// within this distance of its own 8x8 block (the caches hold earlier frames of the same layers,
    /// so time adds no spatial reach). A 3×3 pad-1 conv at scale `s` (input pixels per pixel of its
    /// input) reaches its padding, `s` pixels; a downsampler's conv (diffusers `WanResample`:
    /// ZeroPad2d((0, 1, 0, 1)) then Conv2d(3, stride 2)) spans its 3 taps, 2 pixels of its input, on
    /// the right and bottom only, counted on both sides here: `2s`. RMS_norm, SiLU, time_conv and
    /// the 1×1 shortcuts reach none. For Wan2.1: conv_in 1, down_blocks.0-1 4, their downsampler 2,
    /// down_blocks.3-4 8, downsampler 4, down_blocks.6-7 16, downsampler 8: 43 pixels.
    pub fn down_radius(&self) -> usize {
        let mut scale = 1;
        let mut r = self.conv_in.conv.padding.1;
        for b in &self.down_blocks[..self.split()] {
            match b {
                DownBlock::Res(res) => r += (res.conv1.padding.1 + res.conv2.padding.1) * scale,
                DownBlock::Resample(d) => {
                    r += (d.resample.k.1 - 1) * scale;
                    scale *= d.resample.stride.1;
                }
            }
        }
        r
    }

    /// The down part up to the stream block's time_conv, on a chunk of frames ([1, T, H, W, C_in])
    /// as `AutoencoderKLWan._encode` hands it to `WanEncoder3d.forward` (diffusers): `conv_in`, the
    /// down blocks before the stream block and that block's spatial conv (Wan2.1: conv_in,
    /// down_blocks.0-4 and down_blocks.5's `resample`, down to quarter resolution).
    /// Every module here maps frames one to one, and a causal conv computes an output frame from the
    /// same three input frames, by the same products in the same order, whether the two before it
    /// come in the same call or from its cache (diffusers `WanCausalConv3d.forward` with `cache_x`;
    /// [`super::exec::Cache::push`] keeps the same two frames either way), so a chunk's frames may
    /// come all at once or any run of them in order (encode.rs gives one at a time): the outputs and
    /// the caches after the chunk are the same. (Same order, same bits, except for f32 on the
    /// 3xTF32 kernel, whose partial sums are flushed every 1 or 2 k8 steps as the tile it picks for
    /// the output count says (`ops::conv::tf32::choose_tile`): Wan2.1's layers at 480p and 720p pick
    /// tiles of one flush group on 1 and on 4 frames, on cards of 108 to 132 SMs.) The frames,
    /// gathered into the chunk, go on in [`Self::down_chunk`], a later forward (each takes the stream
    /// block's unit).
    pub fn down_frames<'p>(&self, ctx: &Ctx<'p, '_, '_, '_>, x: Act<'p>) -> Result<Act<'p>> {
        let input = x;
        let mut x = self.conv_in.forward(ctx, &input.t)?;
        drop(input);
        ctx.capture("encoder.conv_in", &x.t)?;
        for (i, b) in self.down_blocks[..self.frames_end()].iter().enumerate() {
            x = b.forward(ctx, x)?;
            ctx.capture(&format!("encoder.down_blocks.{i}"), &x.t)?;
        }
        match self.stream_block() {
            Some((_, r)) => r.forward_spatial(ctx, x),
            None => Ok(x),
        }
    }

    /// The rest of the down part, on the whole chunk [`Self::down_frames`] gave: the stream block's
    /// time_conv (diffusers `WanResample.forward`, downsample3d: a later chunk's 4 frames become 2)
    /// and the down blocks after it through the last resampler. Convolutions, per-pixel norms and
    /// strided convs only, like the frames part: a window (aligned to the down scale) computes its
    /// interior exactly when it extends [`Self::down_radius`] past it (see tiling.rs).
    pub fn down_chunk<'p>(&self, ctx: &Ctx<'p, '_, '_, '_>, mut x: Act<'p>) -> Result<Act<'p>> {
        if let Some((k, r)) = self.stream_block() {
            x = r.forward_time(ctx, x)?;
            ctx.capture(&format!("encoder.down_blocks.{k}"), &x.t)?;
        }
        let from = self.chunk_start();
        for (i, b) in self.down_blocks[from..self.split()].iter().enumerate() {
            x = b.forward(ctx, x)?;
            ctx.capture(&format!("encoder.down_blocks.{}", from + i), &x.t)?;
        }
        Ok(x)
    }

    /// The rest at latent resolution, on whole frames: the remaining down blocks, the mid block (its
    /// attention is global over a frame, so no halo would make it exact), the head and `quant_conv`.
    pub fn latent_part<'p>(&self, ctx: &Ctx<'p, '_, '_, '_>, mut x: Act<'p>) -> Result<Act<'p>> {
        let s = self.split();
        for (i, b) in self.down_blocks[s..].iter().enumerate() {
            x = b.forward(ctx, x)?;
            ctx.capture(&format!("encoder.down_blocks.{}", s + i), &x.t)?;
        }
        x = self.mid_block.forward(ctx, x)?;
        ctx.capture("encoder.mid_block", &x.t)?;
        x = self.head.forward(ctx, x)?;
        ctx.capture("encoder.conv_out", &x.t)?;
        let q = self.quant_conv.forward(ctx, &x.t)?;
        drop(x);
        ctx.capture("quant_conv", &q.t)?;
        Ok(q)
    }
}

/// Up blocks computed on whole frames before the spatial tiles start (`WanDecoder3d::latent_part`):
/// the mid block's attention is global over a frame, so it and everything before it must see whole
/// frames (tiling it would change the result); the first up block (384 channels at latent
/// resolution, a few percent of a decode's FLOPs) joins it because its 6 convs would add 6 latent
/// pixels to every tile's halo (13 instead of 6).
pub const UNTILED_UP_BLOCKS: usize = 1;

/// `post_quant_conv` followed by `WanDecoder3d`. A chunk is [`WanDecoder3d::latent_part`] then the
/// tail ([`WanDecoder3d::tail_chunk`], [`WanDecoder3d::tail_frames`]), the tail possibly window by
/// window (see tiling.rs).
pub struct WanDecoder3d {
    pub post_quant_conv: ConvUnit,
    pub conv_in: ConvUnit,
    pub mid_block: WanMidBlock,
    pub up_blocks: Vec<WanUpBlock>,
    pub head: Head,
}

impl WanDecoder3d {
    /// Declares under `vb` (the model root): keys `post_quant_conv.*` and `decoder.*`.
    pub fn new(vb: &VarBuilder, cfg: &VaeConfig) -> WanDecoder3d {
        let post_quant_conv = ConvUnit::new(&vb.pp("post_quant_conv"), cfg.z_dim, cfg.z_dim, 1);
        let d = vb.pp("decoder");
        let dims = cfg.dims_decoder();
        let conv_in = ConvUnit::new(&d.pp("conv_in"), cfg.z_dim, dims[0], 3);
        let mid_block = WanMidBlock::new(&d.pp("mid_block"), dims[0]);
        let up = cfg.temperal_upsample();
        let last = cfg.dim_mult.len() - 1;
        let up_blocks = dims
            .windows(2)
            .enumerate()
            .map(|(i, w)| {
                // Every up block after the first takes the halved width of the upsampler before it.
                let cin = if i > 0 { w[0] / 2 } else { w[0] };
                let mode = (i != last).then(|| if up[i] { ResampleMode::Upsample3d } else { ResampleMode::Upsample2d });
                WanUpBlock::new(&d.pp("up_blocks").pp(i), cin, w[1], cfg.num_res_blocks, mode)
            })
            .collect();
        let out_dim = *dims.last().unwrap_or(&cfg.base_dim);
        let head = Head::new(&d, out_dim, cfg.out_channels);
        WanDecoder3d { post_quant_conv, conv_in, mid_block, up_blocks, head }
    }

    pub fn plan(&self, walk: &mut Walk) {
        self.plan_latent(walk);
        self.plan_tail(walk);
    }

    /// Plan of [`Self::latent_part`].
    pub fn plan_latent(&self, walk: &mut Walk) {
        self.post_quant_conv.plan(walk);
        self.conv_in.plan(walk);
        self.mid_block.plan(walk);
        self.up_blocks[..self.split()].iter().for_each(|u| u.plan(walk));
    }

    /// Plan of [`Self::tail_chunk`] then [`Self::tail_frames`] (with `walk.stream`, on one frame at
    /// a time).
    pub fn plan_tail(&self, walk: &mut Walk) {
        let s = self.split();
        let from = match self.stream_block() {
            Some(k) => {
                self.up_blocks[s..k].iter().for_each(|u| u.plan(walk));
                self.up_blocks[k].plan_time(walk);
                if walk.stream {
                    walk.one_frame_at_a_time();
                }
                if let Some(u) = &self.up_blocks[k].upsamplers {
                    u.plan_spatial(walk);
                }
                k + 1
            }
            None => {
                if walk.stream {
                    walk.one_frame_at_a_time();
                }
                s
            }
        };
        self.up_blocks[from..].iter().for_each(|u| u.plan(walk));
        self.head.plan(walk);
    }

    /// Up blocks of the latent part (at most all of them).
    fn split(&self) -> usize {
        UNTILED_UP_BLOCKS.min(self.up_blocks.len())
    }

    /// The tail's up block with the last temporal upsampler (up_blocks.1 for Wan2.1), if any: a
    /// chunk has all its frames from that upsampler's time_conv on, and every module after it maps
    /// frames one to one.
    fn stream_block(&self) -> Option<usize> {
        (self.split()..self.up_blocks.len()).rev().find(|&i| self.up_blocks[i].upsamplers.as_ref().is_some_and(|u| u.mode == ResampleMode::Upsample3d))
    }

    /// How much larger the tail's input is than the latent frame (2 for Wan2.1: one spatial upsampler
    /// in the latent part).
    pub fn split_scale(&self) -> usize {
        1 << self.up_blocks[..self.split()].iter().filter(|u| u.upsamplers.is_some()).count()
    }

    /// How much larger the output is than the tail's input.
    pub fn tail_scale(&self) -> usize {
        1 << self.up_blocks[self.split()..].iter().filter(|u| u.upsamplers.is_some()).count()
    }

    /// The tail's spatial receptive radius in output pixels: an output pixel depends on the tail's
    /// input within this distance (and on nothing else spatially: the caches hold earlier frames of
    /// the same layers, so time adds no spatial reach). Each 3×3 conv reaches its padding (1 pixel)
    /// at its own resolution, i.e. `scale` output pixels; RMS_norm, SiLU, nearest upsampling,
    /// time_conv and the 1×1 shortcuts reach none. For Wan2.1: up_blocks.1's 6 convs at 4 px, its
    /// upsampler conv at 2, up_blocks.2's 6 at 2, its upsampler conv at 1, up_blocks.3's 6 and
    /// conv_out at 1: 46 output pixels (5.75 latent pixels).
    pub fn tail_radius(&self) -> usize {
        let mut scale = self.tail_scale();
        let mut r = 0;
        let reach = |c: &super::modules::WanCausalConv3d| c.padding.1;
        for u in &self.up_blocks[self.split()..] {
            for res in &u.resnets {
                r += (reach(&res.conv1) + reach(&res.conv2)) * scale;
            }
            if let Some(up) = &u.upsamplers {
                scale /= 2;
                r += reach(&up.resample) * scale;
            }
        }
        r + reach(&self.head.conv_out) * scale
    }

    /// One latent frame ([1, 1, h, w, z]) through `post_quant_conv`, `conv_in`, the mid block (whose
    /// attention is global over the frame) and the first [`UNTILED_UP_BLOCKS`] up blocks, on whole frames.
    pub fn latent_part<'p>(&self, ctx: &Ctx<'p, '_, '_, '_>, z: Act<'p>) -> Result<Act<'p>> {
        let q = self.post_quant_conv.forward(ctx, &z.t)?;
        drop(z);
        ctx.capture("post_quant_conv", &q.t)?;
        let mut x = self.conv_in.forward(ctx, &q.t)?;
        drop(q);
        ctx.capture("decoder.conv_in", &x.t)?;
        x = self.mid_block.forward(ctx, x)?;
        ctx.capture("decoder.mid_block", &x.t)?;
        for (i, u) in self.up_blocks[..self.split()].iter().enumerate() {
            x = u.forward(ctx, x)?;
            ctx.capture(&format!("decoder.up_blocks.{i}"), &x.t)?;
        }
        Ok(x)
    }

    /// The tail (up blocks, norm_out, SiLU, conv_out) runs on the latent part's output or a window
    /// of it: convolutions, per-pixel norms and upsampling only, so a window computes its interior
    /// exactly when it extends [`Self::tail_radius`] past it. Its first part, on the whole chunk: the
    /// up blocks through the residual blocks of the one with the last temporal upsampler (Wan2.1:
    /// up_blocks.1) and that upsampler's time_conv (the chunk's 2 frames become 4, diffusers
    /// `WanResample.forward`). The rest, [`Self::tail_frames`], takes the frames this returns.
    pub fn tail_chunk<'p>(&self, ctx: &Ctx<'p, '_, '_, '_>, mut x: Act<'p>) -> Result<Act<'p>> {
        let s = self.split();
        let Some(k) = self.stream_block() else { return Ok(x) };
        for (i, u) in self.up_blocks[s..k].iter().enumerate() {
            x = u.forward(ctx, x)?;
            ctx.capture(&format!("decoder.up_blocks.{}", s + i), &x.t)?;
        }
        self.up_blocks[k].forward_time(ctx, x)
    }

    /// The tail after [`Self::tail_chunk`]: that upsampler's spatial part, the later up blocks and the
    /// head, on all of its frames or on any run of them in order (decode.rs gives one at a time):
    /// every module here maps frames one to one, and a causal conv computes an output frame from the
    /// same three input frames, by the same products in the same order, whether the two before it
    /// come in the same call or from its cache (diffusers `WanCausalConv3d.forward` with
    /// `cache_x`), so the frames come out the same either way. A later forward than
    /// [`Self::tail_chunk`]'s (each takes the upsampler's unit), with `ctx`'s caches resumed where
    /// that one stopped.
    pub fn tail_frames<'p>(&self, ctx: &Ctx<'p, '_, '_, '_>, mut x: Act<'p>) -> Result<Act<'p>> {
        let from = match self.stream_block() {
            Some(k) => {
                if let Some(u) = &self.up_blocks[k].upsamplers {
                    x = u.forward_spatial(ctx, x)?;
                }
                ctx.capture(&format!("decoder.up_blocks.{k}"), &x.t)?;
                k + 1
            }
            None => self.split(),
        };
        for (i, u) in self.up_blocks[from..].iter().enumerate() {
            x = u.forward(ctx, x)?;
            ctx.capture(&format!("decoder.up_blocks.{}", from + i), &x.t)?;
        }
        let x = self.head.forward(ctx, x)?;
        ctx.capture("decoder.conv_out", &x.t)?;
        Ok(x)
    }
}
