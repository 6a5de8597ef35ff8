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
        self.conv_in.plan(walk);
        for b in &self.down_blocks {
            match b {
                DownBlock::Res(r) => r.plan(walk),
                DownBlock::Resample(r) => r.plan(walk),
            }
        }
        self.mid_block.plan(walk);
        self.head.plan(walk);
        self.quant_conv.plan(walk);
    }

    /// One chunk of frames ([1, T, H, W, C_in]) to its moments ([1, T', h, w, 2z]).
    pub fn chunk<'p>(&self, ctx: &Ctx<'p, '_, '_>, x: Act<'p>) -> Result<Act<'p>> {
        let input = x;
        let mut x = self.conv_in.forward(ctx, &input.t)?;
        drop(input);
        ctx.capture("encoder.conv_in", &x.t)?;
        for (i, b) in self.down_blocks.iter().enumerate() {
            x = match b {
                DownBlock::Res(r) => r.forward(ctx, x)?,
                DownBlock::Resample(r) => r.forward(ctx, x)?,
            };
            ctx.capture(&format!("encoder.down_blocks.{i}"), &x.t)?;
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

/// `post_quant_conv` followed by `WanDecoder3d`.
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
        self.post_quant_conv.plan(walk);
        self.conv_in.plan(walk);
        self.mid_block.plan(walk);
        self.up_blocks.iter().for_each(|u| u.plan(walk));
        self.head.plan(walk);
    }

    /// One latent frame ([1, 1, h, w, z]) to its output frames ([1, n, H, W, C_out], unclamped).
    pub fn chunk<'p>(&self, ctx: &Ctx<'p, '_, '_>, z: Act<'p>) -> Result<Act<'p>> {
        let q = self.post_quant_conv.forward(ctx, &z.t)?;
        drop(z);
        ctx.capture("post_quant_conv", &q.t)?;
        let mut x = self.conv_in.forward(ctx, &q.t)?;
        drop(q);
        ctx.capture("decoder.conv_in", &x.t)?;
        x = self.mid_block.forward(ctx, x)?;
        ctx.capture("decoder.mid_block", &x.t)?;
        for (i, u) in self.up_blocks.iter().enumerate() {
            x = u.forward(ctx, x)?;
            ctx.capture(&format!("decoder.up_blocks.{i}"), &x.t)?;
        }
        let x = self.head.forward(ctx, x)?;
        ctx.capture("decoder.conv_out", &x.t)?;
        Ok(x)
    }
}
