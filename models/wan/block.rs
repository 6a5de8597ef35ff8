//! diffusers' `WanTransformerBlock` (transformer_wan.py): modulated self-attention with RoPE,
//! cross-attention to the text (and, for I2V, the image) context, and a modulated GELU feed-forward.
//!
//! Offload units, in execution order: the block's own `scale_shift_table`; `attn1.to_qkv` (to_q, to_k,
//! to_v and their q/k RMSNorms, so one batched GEMM computes q, k and v); `attn1.to_out.0`; `norm2`;
//! `attn2.to_q` with `attn2.norm_q`; `attn2.to_k` with `attn2.norm_k`; `attn2.to_v`; for I2V
//! `attn2.add_k_proj` with `attn2.norm_added_k` and `attn2.add_v_proj`; `attn2.to_out.0`; `ffn.net.0.proj`;
//! `ffn.net.2`. Each norm rides with the Linear whose output it normalizes, so no unit is held across
//! another's upload.

use super::config::WanConfig;
use super::parallel::SequenceParallel;
use crate::nn::{linear_group, Linear, Norm};
use wanrt_runtime::arena::{Arena, ArenaPlan, Buf};
use wanrt_runtime::offload::{Forward, Param, VarBuilder};
use wanrt_runtime::ops::{self, GeluApprox};
use wanrt_runtime::{DType, Result, Tensor};

/// A Linear whose output is RMS-normalized right after (attn2's q and k, I2V's added k).
pub struct NormedLinear {
    pub linear: Linear,
    pub norm: Norm,
}

impl NormedLinear {
    fn new(unit: &VarBuilder, norm: &VarBuilder, inp: usize, out: usize) -> NormedLinear {
        unit.unit(|u| NormedLinear { linear: Linear::declare(u, unit, inp, out, true), norm: Norm::declare(u, norm, out, false) })
    }

    /// `out = RMSNorm(x · Wᵀ + b)`.
    fn run(&self, fw: &Forward<'_>, x: &Tensor, out: &Tensor, eps: f32) -> Result<()> {
        let g = fw.unit(self.linear.weight.unit())?;
        self.linear.forward(&g, x, out)?;
        self.norm.rms_norm(&g, out, eps, out)
    }
}

/// `attn1`: self-attention, q/k/v as one stacked unit (weights, then biases, then the q/k norms).
pub struct SelfAttention {
    /// to_q, to_k, to_v.
    pub qkv: [Linear; 3],
    pub norm_q: Norm,
    pub norm_k: Norm,
    pub to_out: Linear,
}

/// `attn2`: cross-attention to the text context, plus the image context's K/V for I2V.
pub struct CrossAttention {
    pub to_q: NormedLinear,
    pub to_k: NormedLinear,
    pub to_v: Linear,
    /// I2V: `add_k_proj` (with `norm_added_k`) and `add_v_proj`.
    pub added_kv: Option<(NormedLinear, Linear)>,
    pub to_out: Linear,
}

pub struct WanTransformerBlock {
    pub scale_shift_table: Param,
    pub attn1: SelfAttention,
    /// `FP32LayerNorm` with affine parameters (cross_attn_norm).
    pub norm2: Norm,
    pub attn2: CrossAttention,
    /// `ffn.net.0.proj` and `ffn.net.2`.
    pub ffn: [Linear; 2],
}

impl WanTransformerBlock {
    pub fn new(vb: &VarBuilder, cfg: &WanConfig) -> WanTransformerBlock {
        let d = cfg.inner_dim();
        let scale_shift_table = vb.unit(|u| u.param(vb, "scale_shift_table", &[1, 6, d]));
        let a1 = vb.pp("attn1");
        let attn1 = a1.unit_named(a1.pp("to_qkv").path(), |u| {
            let names = ["to_q", "to_k", "to_v"].map(|n| a1.pp(n));
            // Weights first, then biases: the packing puts the three weights back to back as one
            // [3, D, D] stack (and the biases as [3, D]) for the batched GEMM.
            let w = names.clone().map(|l| u.param(&l, "weight", &[d, d]));
            let b = names.map(|l| u.param(&l, "bias", &[d]));
            let qkv = [0, 1, 2].map(|j| Linear { weight: w[j], bias: Some(b[j]) });
            (qkv, Norm::declare(u, &a1.pp("norm_q"), d, false), Norm::declare(u, &a1.pp("norm_k"), d, false))
        });
        let (qkv, norm_q, norm_k) = attn1;
        let attn1 = SelfAttention { qkv, norm_q, norm_k, to_out: Linear::unit(&a1.pp("to_out.0"), d, d) };
        let norm2 = Norm::unit(&vb.pp("norm2"), d, true);
        let a2 = vb.pp("attn2");
        let attn2 = CrossAttention {
            to_q: NormedLinear::new(&a2.pp("to_q"), &a2.pp("norm_q"), d, d),
            to_k: NormedLinear::new(&a2.pp("to_k"), &a2.pp("norm_k"), d, d),
            to_v: Linear::unit(&a2.pp("to_v"), d, d),
            added_kv: cfg.added_kv_proj_dim.map(|kv| {
                (NormedLinear::new(&a2.pp("add_k_proj"), &a2.pp("norm_added_k"), kv, d), Linear::unit(&a2.pp("add_v_proj"), kv, d))
            }),
            to_out: Linear::unit(&a2.pp("to_out.0"), d, d),
        };
        let ffn = [Linear::unit(&vb.pp("ffn.net.0.proj"), d, cfg.ffn_dim), Linear::unit(&vb.pp("ffn.net.2"), cfg.ffn_dim, d)];
        WanTransformerBlock { scale_shift_table, attn1, norm2, attn2, ffn }
    }
}

/// The block loop's buffers, shared by every block of one forward ("no allocation inside the
/// loop"), with a fixed reuse plan: the residual stream ping-pongs between the forward's `x` and
/// `residual`; `s[0..5]` are [B, N, D] scratch, `hidden` is the FFN's [B, N, F], aliasing s2..s4
/// (4·N·D + max(3·N·D, N·F) elements in all: 2.35 GB at 14B 480p in bf16).
///
/// Reuse plan per block (x = input residual, out = output residual):
///   self-attn:  s0 = LN-mod(x); s2,s3,s4 = q,k,v (one stacked GEMM; RMSNorm+RoPE in place);
///               s1 = attn; s0 = to_out(s1); out = x + s0·gate
///   cross-attn: s0 = LN(out); s1 = q (RMSNorm in place); kt,vt = text K,V; s4 = attn;
///               [I2V: ki,vi = image K,V; s2 = attn_img; s4 += s2]; s3 = to_out(s4); x = out + s3
///   FFN:        s0 = LN-mod(x); hidden = GELU(ffn.0(s0)); s1 = ffn.2(hidden); out = x + s1·gate
/// No op reads a buffer it writes except the documented in-place ones (RMSNorm(+RoPE), GELU, add).
/// `s2`, `s3`, `s4` and `hidden` share one region: the FFN runs after the last read of s2..s4 and the
/// next block writes them after the FFN's last read of `hidden` (one stream orders both).
pub struct BlockBufs {
    pub residual: Buf,
    s: [Buf; 5],
    /// s2, s3, s4 as one [3, B·N, D] stack: the self-attention's q, k, v from one batched GEMM.
    qkv: Buf,
    hidden: Buf,
    kt: Buf,
    vt: Buf,
    image_kv: Option<(Buf, Buf)>,
    modulation: Buf,
}

impl BlockBufs {
    pub fn plan(p: &mut ArenaPlan, cfg: &WanConfig, dt: DType, b: usize, n: usize, l: usize, li: Option<usize>) -> BlockBufs {
        let (d, f) = (cfg.inner_dim(), cfg.ffn_dim);
        let tail = p.buffer("block scratch + ffn hidden", &[b * n * (3 * d).max(f)], dt);
        let part = |p: &mut ArenaPlan, k: usize| p.view(tail, (k * b * n * d * dt.size()) as u64, &[b, n, d], dt);
        let s = [p.buffer("block scratch", &[b, n, d], dt), p.buffer("block scratch", &[b, n, d], dt), part(p, 0), part(p, 1), part(p, 2)];
        BlockBufs {
            residual: p.buffer("residual", &[b, n, d], dt),
            s,
            qkv: p.view(tail, 0, &[3, b * n, d], dt),
            hidden: p.view(tail, 0, &[b, n, f], dt),
            kt: p.buffer("text k", &[b, l, d], dt),
            vt: p.buffer("text v", &[b, l, d], dt),
            image_kv: li.filter(|_| cfg.added_kv_proj_dim.is_some()).map(|li| (p.buffer("image k", &[b, li, d], dt), p.buffer("image v", &[b, li, d], dt))),
            modulation: p.buffer("modulation", &[b, 6, d], DType::F32),
        }
    }
}

/// What every block of one forward reads besides its weights and its input.
pub struct BlockCtx<'a> {
    pub cfg: &'a WanConfig,
    pub arena: &'a Arena,
    pub bufs: &'a BlockBufs,
    /// `timestep_proj` as [B, 6, D].
    pub tproj6: &'a Tensor,
    pub text: &'a Tensor,
    pub image: Option<&'a Tensor>,
    pub cos: &'a Tensor,
    pub sin: &'a Tensor,
    /// Record the first block's intermediates (tests against the reference fixtures).
    pub capturing: bool,
    /// This rank's part when the sequence is split over GPUs (`cos`/`sin` are then its tokens' rows).
    pub sp: Option<&'a SequenceParallel<'a>>,
}

impl WanTransformerBlock {
    /// One block: reads `x`, writes its output into `out`, and leaves `x` free.
    pub fn forward(&self, fw: &Forward<'_>, c: &BlockCtx<'_>, first: bool, x: &Tensor, out: &Tensor, cap: &mut dyn FnMut(&str, &Tensor)) -> Result<()> {
        let a = c.arena;
        let [s0, s1, s2, s3, s4] = c.bufs.s.map(|s| a.get(s));
        let (b, n, d) = (x.dim(0), x.dim(1), x.dim(2));
        let eps = c.cfg.eps as f32;
        let (heads, hd) = (c.cfg.num_attention_heads, c.cfg.attention_head_dim);
        let scale = 1.0 / (hd as f32).sqrt();
        let heads4 = |t: &Tensor, len: usize| t.reshape(&[b, len, heads, hd]);
        let mut cap = |name: &str, t: &Tensor| {
            if first {
                cap(&format!("blocks.0.{name}"), t)
            }
        };

        // Modulation in f32: scale_shift_table + f32(timestep_proj), six [B, D] chunks.
        let m = a.get(c.bufs.modulation);
        ops::add_rows_f32(fw.unit(self.scale_shift_table.unit())?.get(self.scale_shift_table)?, c.tproj6, m)?;
        let chunk = |k: usize| m.narrow(1, k, 1);

        // (a) self-attention; q, k, v land in s2, s3, s4 (the arena's `qkv` stack).
        ops::layer_norm_modulate(x, &chunk(1)?, &chunk(0)?, eps, s0)?;
        cap("norm1_modulated", s0);
        {
            let at = &self.attn1;
            let g = fw.unit(at.qkv[0].weight.unit())?;
            linear_group(&g, &at.qkv, s0, a.get(c.bufs.qkv))?;
            if first && c.capturing {
                // Only for comparing with the reference: the fused kernel below never materializes it.
                let qn = Tensor::empty_named(x.device(), &[b, n, d], x.dtype(), "q_norm")?;
                at.norm_q.rms_norm(&g, s2, eps, &qn)?;
                cap("attn1.q_norm", &qn);
            }
            let (q4, k4) = (heads4(s2, n)?, heads4(s3, n)?);
            ops::rms_norm_rope(&q4, Some(g.get(at.norm_q.weight)?), c.cos, c.sin, eps, &q4)?;
            ops::rms_norm_rope(&k4, Some(g.get(at.norm_k.weight)?), c.cos, c.sin, eps, &k4)?;
            cap("attn1.q_rope", &q4);
        }
        match c.sp {
            None => ops::attention(&heads4(s2, n)?, &heads4(s3, n)?, &heads4(s4, n)?, None, scale, &heads4(s1, n)?)?,
            // s0 was last read by the q/k/v GEMM: free to carry the exchanges.
            Some(sp) => sp.self_attention(s2, s3, s4, s1, s0, heads, hd, scale)?,
        }
        cap("attn1.sdpa", s1);
        self.attn1.to_out.run(fw, s1, s0)?;
        cap("attn1.out", s0);
        ops::gated_residual(x, s0, &chunk(2)?, out)?;
        cap("after_attn1", out);

        // (b) cross-attention (text, plus image K/V for I2V); `x` is free from here on.
        self.norm2.layer_norm(&fw.unit(self.norm2.weight.unit())?, out, eps, s0)?;
        cap("norm2.out", s0);
        let at = &self.attn2;
        let (kt, vt) = (a.get(c.bufs.kt), a.get(c.bufs.vt));
        let l = c.text.dim(1);
        at.to_q.run(fw, s0, s1, eps)?;
        at.to_k.run(fw, c.text, kt, eps)?;
        at.to_v.run(fw, c.text, vt)?;
        let q4 = heads4(s1, n)?;
        ops::attention(&q4, &heads4(kt, l)?, &heads4(vt, l)?, None, scale, &heads4(s4, n)?)?;
        if let (Some((add_k, add_v)), Some(img), Some((ki, vi))) = (&at.added_kv, c.image, c.bufs.image_kv) {
            let (ki, vi, li) = (a.get(ki), a.get(vi), img.dim(1));
            add_k.run(fw, img, ki, eps)?;
            add_v.run(fw, img, vi)?;
            ops::attention(&q4, &heads4(ki, li)?, &heads4(vi, li)?, None, scale, &heads4(s2, n)?)?;
            cap("attn2.sdpa_img", s2);
            ops::add(s4, s2, s4)?;
        }
        // The reference records the input of to_out: for I2V the sum of the text and image halves.
        cap("attn2.sdpa", s4);
        at.to_out.run(fw, s4, s3)?;
        cap("attn2.out", s3);
        ops::add(out, s3, x)?;
        cap("after_attn2", x);

        // (c) feed-forward
        ops::layer_norm_modulate(x, &chunk(4)?, &chunk(3)?, eps, s0)?;
        cap("norm3_modulated", s0);
        let h = a.get(c.bufs.hidden);
        self.ffn[0].run(fw, s0, h)?;
        ops::gelu(h, h, GeluApprox::Tanh)?;
        cap("ffn.act", h);
        self.ffn[1].run(fw, h, s1)?;
        cap("ffn.out", s1);
        ops::gated_residual(x, s1, &chunk(5)?, out)
    }
}
