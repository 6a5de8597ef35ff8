//! diffusers' `WanTimeTextImageEmbedding` (transformer_wan.py): the timestep MLP and its six-way
//! projection, the text projection, and (I2V) the image projection.

use super::config::WanConfig;
use crate::nn::{Linear, Norm};
use wanrt_runtime::arena::{Arena, ArenaPlan, Buf};
use wanrt_runtime::offload::{Forward, VarBuilder};
use wanrt_runtime::ops::{self, GeluApprox};
use wanrt_runtime::{DType, Result, Tensor};

/// `TimestepEmbedding`: Linear, SiLU, Linear (kept in fp32 in bf16 mode).
pub struct TimestepEmbedding {
    pub linear_1: Linear,
    pub linear_2: Linear,
}

/// `PixArtAlphaTextProjection`: Linear, GELU(tanh), Linear.
pub struct PixArtAlphaTextProjection {
    pub linear_1: Linear,
    pub linear_2: Linear,
}

/// `WanImageEmbedding`: FP32LayerNorm, FeedForward (Linear, GELU, Linear), FP32LayerNorm.
pub struct WanImageEmbedding {
    pub norm1: Norm,
    /// `ff.net.0.proj` and `ff.net.2`.
    pub ff: [Linear; 2],
    pub norm2: Norm,
}

pub struct WanTimeTextImageEmbedding {
    pub time_embedder: TimestepEmbedding,
    pub time_proj: Linear,
    pub text_embedder: PixArtAlphaTextProjection,
    pub image_embedder: Option<WanImageEmbedding>,
}

/// The embedder's activation buffers for one input (see [`WanTimeTextImageEmbedding::plan`]).
pub struct EmbedBufs {
    pub sinus: Buf,
    t1: Buf,
    pub temb32: Buf,
    /// `temb` in the compute dtype (the output head's modulation reads it).
    pub temb: Buf,
    temb_act: Buf,
    /// `timestep_proj` [B, 6·D].
    pub tproj: Buf,
    h1: Buf,
    /// The projected text [B, L, D].
    pub text: Buf,
    /// I2V: the LayerNorm, the FFN's hidden and output, and the projected image [B, 257, D].
    image: Option<[Buf; 4]>,
}

impl EmbedBufs {
    pub fn image(&self) -> Option<Buf> {
        self.image.map(|b| b[3])
    }
}

impl WanTimeTextImageEmbedding {
    pub fn new(vb: &VarBuilder, cfg: &WanConfig) -> WanTimeTextImageEmbedding {
        let d = cfg.inner_dim();
        let te = vb.pp("time_embedder");
        let tx = vb.pp("text_embedder");
        WanTimeTextImageEmbedding {
            time_embedder: TimestepEmbedding {
                linear_1: Linear::unit(&te.pp("linear_1"), cfg.freq_dim, d),
                linear_2: Linear::unit(&te.pp("linear_2"), d, d),
            },
            time_proj: Linear::unit(&vb.pp("time_proj"), d, 6 * d),
            text_embedder: PixArtAlphaTextProjection {
                linear_1: Linear::unit(&tx.pp("linear_1"), cfg.text_dim, d),
                linear_2: Linear::unit(&tx.pp("linear_2"), d, d),
            },
            image_embedder: cfg.image_dim.map(|img| {
                let ie = vb.pp("image_embedder");
                WanImageEmbedding {
                    norm1: Norm::unit(&ie.pp("norm1"), img, true),
                    ff: [Linear::unit(&ie.pp("ff.net.0.proj"), img, img), Linear::unit(&ie.pp("ff.net.2"), img, d)],
                    norm2: Norm::unit(&ie.pp("norm2"), d, true),
                }
            }),
        }
    }

    /// Declares the buffers [`WanTimeTextImageEmbedding::forward`] uses for a batch of `b`, `l` text
    /// tokens and `li` image tokens.
    pub fn plan(&self, p: &mut ArenaPlan, cfg: &WanConfig, dt: DType, b: usize, l: usize, li: Option<usize>) -> EmbedBufs {
        let d = cfg.inner_dim();
        EmbedBufs {
            sinus: p.buffer("timestep sinusoid", &[b, cfg.freq_dim], DType::F32),
            t1: p.buffer("temb", &[b, d], DType::F32),
            temb32: p.buffer("temb", &[b, d], DType::F32),
            temb: p.buffer("temb", &[b, d], dt),
            temb_act: p.buffer("temb", &[b, d], dt),
            tproj: p.buffer("timestep_proj", &[b, 6 * d], dt),
            h1: p.buffer("text", &[b, l, d], dt),
            text: p.buffer("text", &[b, l, d], dt),
            image: match (li, cfg.image_dim) {
                (Some(li), Some(idim)) => Some([
                    p.buffer("image", &[b, li, idim], dt),
                    p.buffer("image", &[b, li, idim], dt),
                    p.buffer("image", &[b, li, d], dt),
                    p.buffer("image", &[b, li, d], dt),
                ]),
                _ => None,
            },
        }
    }

    /// Time embedding in fp32, then `temb` rounded to the compute dtype and `timestep_proj`
    /// (diffusers `transformer_wan.py` `WanTimeTextImageEmbedding.forward`); the text and image
    /// projections over every position (padding included).
    /// `sinus` must hold the sinusoidal timestep embedding.
    pub fn forward(&self, fw: &Forward<'_>, a: &Arena, bufs: &EmbedBufs, ctx: &Tensor, img: Option<&Tensor>, cap: &mut dyn FnMut(&str, &Tensor)) -> Result<()> {
        let te = &self.time_embedder;
        let (t1, temb32) = (a.get(bufs.t1), a.get(bufs.temb32));
        te.linear_1.run(fw, a.get(bufs.sinus), t1)?;
        ops::silu(t1, t1)?;
        te.linear_2.run(fw, t1, temb32)?;
        cap("condition_embedder.time_embedder.out", temb32);
        let (temb, temb_act, tproj) = (a.get(bufs.temb), a.get(bufs.temb_act), a.get(bufs.tproj));
        ops::cast(temb32, temb)?;
        cap("condition_embedder.temb", temb);
        ops::silu(temb, temb_act)?;
        self.time_proj.run(fw, temb_act, tproj)?;
        cap("condition_embedder.timestep_proj", tproj);

        let (h1, text) = (a.get(bufs.h1), a.get(bufs.text));
        self.text_embedder.linear_1.run(fw, ctx, h1)?;
        ops::gelu(h1, h1, GeluApprox::Tanh)?;
        self.text_embedder.linear_2.run(fw, h1, text)?;
        cap("condition_embedder.text", text);

        if let (Some(ie), Some(img), Some([n1, h, h2, out])) = (&self.image_embedder, img, bufs.image) {
            let (n1, h, h2, out) = (a.get(n1), a.get(h), a.get(h2), a.get(out));
            ie.norm1.layer_norm(&fw.unit(ie.norm1.weight.unit())?, img, 1e-5, n1)?;
            ie.ff[0].run(fw, n1, h)?;
            ops::gelu(h, h, GeluApprox::Erf)?;
            ie.ff[1].run(fw, h, h2)?;
            ie.norm2.layer_norm(&fw.unit(ie.norm2.weight.unit())?, h2, 1e-5, out)?;
            cap("condition_embedder.image", out);
        }
        Ok(())
    }
}
