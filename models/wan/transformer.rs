//! `WanTransformer3DModel` forward on the runtime, reproducing diffusers' rounding points
//! (wan-spec.md §1.3–§1.8). Weights come from a [`ParamSource`]: resident tensors or offload slots.

use std::collections::HashMap;
use std::sync::Arc;

use super::config::{Precision, WanConfig};
use super::weights::{units, UnitSpec};
use wanrt_runtime::ops::{self, GeluApprox};
use wanrt_runtime::{DType, Device, Error, Result, Tensor};

/// Where the forward pass finds its parameters. Units are requested in the declared order
/// ([`super::weights::units`]); `release` tells the source the compute that reads a unit is queued.
pub trait ParamSource {
    fn acquire(&mut self, unit: usize) -> Result<()>;
    fn get(&self, name: &str) -> Result<Tensor>;
    fn release(&mut self, unit: usize) -> Result<()>;
}

/// Every parameter resident on the device.
pub struct Resident {
    pub tensors: HashMap<String, Tensor>,
}

impl ParamSource for Resident {
    fn acquire(&mut self, _unit: usize) -> Result<()> {
        Ok(())
    }
    fn get(&self, name: &str) -> Result<Tensor> {
        self.tensors.get(name).cloned().ok_or_else(|| Error::invalid(format!("parameter {name} is not loaded")))
    }
    fn release(&mut self, _unit: usize) -> Result<()> {
        Ok(())
    }
}

/// Inputs of one forward, shaped as diffusers takes them.
pub struct Inputs {
    /// `(B, Cin, T, H, W)` in the compute dtype.
    pub hidden_states: Tensor,
    /// One timestep per sample (integers for UniPC, floats for flow-match Euler).
    pub timestep: Vec<f32>,
    /// `(B, L, text_dim)`; I2V needs L = 512 (the reference splits image and text at L − 512).
    pub encoder_hidden_states: Tensor,
    /// I2V: `(B, 257, image_dim)`.
    pub encoder_hidden_states_image: Option<Tensor>,
}

/// Named intermediate activations, for comparing against the reference fixtures.
pub type Capture = HashMap<String, Tensor>;

/// RoPE cos/sin tables per patch grid (frames, height, width).
type RopeCache = HashMap<(usize, usize, usize), (Tensor, Tensor)>;

pub struct WanTransformer {
    pub cfg: WanConfig,
    pub precision: Precision,
    pub units: Vec<UnitSpec>,
    dev: Arc<Device>,
    rope_cache: parking_lot::Mutex<RopeCache>,
}

/// Sinusoidal timestep embedding as diffusers computes it in fp32 (`get_timestep_embedding`,
/// flip_sin_to_cos, shift 0): `[cos(t·f_k), sin(t·f_k)]`, `f_k = exp(−ln(10000)·k/half)`.
pub fn timestep_embedding(timesteps: &[f32], dim: usize) -> Vec<f32> {
    let half = dim / 2;
    let ln = -(10000f32).ln();
    let mut out = Vec::with_capacity(timesteps.len() * dim);
    for &t in timesteps {
        let args: Vec<f32> = (0..half).map(|k| t * (ln * k as f32 / half as f32).exp()).collect();
        out.extend(args.iter().map(|a| a.cos()));
        out.extend(args.iter().map(|a| a.sin()));
    }
    out
}

impl WanTransformer {
    pub fn new(dev: Arc<Device>, cfg: WanConfig, precision: Precision) -> Result<WanTransformer> {
        cfg.validate()?;
        let units = units(&cfg, precision);
        Ok(WanTransformer { cfg, precision, units, dev, rope_cache: Default::default() })
    }

    pub fn device(&self) -> &Arc<Device> {
        &self.dev
    }

    /// RoPE tables for a token grid, built once per grid and kept on the device (a denoising loop runs
    /// the same grid every step; rebuilding would put a host computation and upload in every forward).
    fn rope(&self, gt: usize, gh: usize, gw: usize) -> Result<(Tensor, Tensor)> {
        let mut cache = self.rope_cache.lock();
        if let Some(t) = cache.get(&(gt, gh, gw)) {
            return Ok(t.clone());
        }
        let hd = self.cfg.attention_head_dim;
        let (cos, sin) = ops::rope::rope_tables(gt, gh, gw, hd)?;
        let n = gt * gh * gw;
        let t = (
            Tensor::from_f32(&self.dev, &[n, hd], DType::F32, &cos)?,
            Tensor::from_f32(&self.dev, &[n, hd], DType::F32, &sin)?,
        );
        cache.insert((gt, gh, gw), t.clone());
        Ok(t)
    }

    /// Acquires the next unit in declared order (checked against the expected name in debug builds).
    fn acquire(&self, params: &mut dyn ParamSource, unit: &mut usize, expect: &str) -> Result<usize> {
        let i = *unit;
        if self.units.get(i).map(|u| u.name.as_str()) != Some(expect) {
            return Err(Error::invalid(format!("internal: unit {i} is not {expect}")));
        }
        params.acquire(i)?;
        *unit += 1;
        Ok(i)
    }

    fn empty(&self, shape: &[usize], dtype: DType, what: &str) -> Result<Tensor> {
        Tensor::empty_named(&self.dev, shape, dtype, what)
    }

    /// Runs the model. Returns `(B, out_channels, T, H, W)` in the compute dtype.
    pub fn forward(&self, params: &mut dyn ParamSource, inputs: &Inputs, mut capture: Option<&mut Capture>) -> Result<Tensor> {
        let _r = ops::range("wan.forward");
        let cfg = &self.cfg;
        let dt = self.precision.compute();
        let d = cfg.inner_dim();
        let x_in = &inputs.hidden_states;
        x_in.expect_dtype("wan.forward", "hidden_states", dt)?;
        let s = x_in.shape();
        if s.len() != 5 || s[1] != cfg.in_channels {
            return Err(Error::Shape { op: "wan.forward", name: "hidden_states".into(), expected: format!("[B, {}, T, H, W]", cfg.in_channels), got: s.to_vec() });
        }
        let b = s[0];
        let (gt, gh, gw) = cfg.grid(s[2], s[3], s[4])?;
        let n = gt * gh * gw;
        if inputs.timestep.len() != b {
            return Err(Error::invalid(format!("{} timesteps for a batch of {b}", inputs.timestep.len())));
        }
        let ctx = &inputs.encoder_hidden_states;
        ctx.expect_dtype("wan.forward", "encoder_hidden_states", dt)?;
        if ctx.rank() != 3 || ctx.dim(0) != b || ctx.dim(2) != cfg.text_dim {
            return Err(Error::Shape { op: "wan.forward", name: "encoder_hidden_states".into(), expected: format!("[{b}, L, {}]", cfg.text_dim), got: ctx.shape().to_vec() });
        }
        let img = match (&inputs.encoder_hidden_states_image, cfg.image_dim) {
            (Some(t), Some(idim)) => {
                t.expect_dtype("wan.forward", "encoder_hidden_states_image", dt)?;
                if t.rank() != 3 || t.dim(0) != b || t.dim(2) != idim {
                    return Err(Error::Shape { op: "wan.forward", name: "encoder_hidden_states_image".into(), expected: format!("[{b}, 257, {idim}]"), got: t.shape().to_vec() });
                }
                Some(t)
            }
            (None, None) => None,
            (None, Some(_)) => return Err(Error::invalid("this I2V model needs encoder_hidden_states_image")),
            (Some(_), None) => return Err(Error::invalid("encoder_hidden_states_image given to a T2V model")),
        };
        let capturing = capture.is_some();
        // Captured tensors are copied: the block arena reuses its buffers within the forward. The
        // first failure to copy one is the forward's error (reported once the forward is queued).
        let mut cap_err: Option<Error> = None;
        let mut cap = |name: &str, t: &Tensor| {
            if let (Some(c), None) = (capture.as_deref_mut(), &cap_err) {
                match Tensor::empty_named(&self.dev, t.shape(), t.dtype(), "capture").and_then(|c| c.copy_from(t).map(|_| c)) {
                    Ok(snap) => {
                        c.insert(name.to_string(), snap);
                    }
                    Err(e) => cap_err = Some(Error::invalid(format!("capturing {name}: {e}"))),
                }
            }
        };
        let mut unit = 0usize;

        // RoPE tables for this grid (fp32, from f64 angles, wan-spec.md §1.5).
        let (cos, sin) = self.rope(gt, gh, gw)?;
        cap("rope.cos", &cos);
        cap("rope.sin", &sin);

        // Patch embedding: a Linear over (c, kt, kh, kw) patch vectors.
        let u = self.acquire(params, &mut unit, "patch_embedding")?;
        let patches = self.empty(&[b, n, cfg.in_channels * 4], dt, "patches")?;
        ops::patchify(x_in, cfg.patch_size, &patches)?;
        let pw = params.get("patch_embedding.weight")?;
        let pw = pw.reshape(&[d, cfg.in_channels * cfg.patch_size.iter().product::<usize>()])?;
        let mut x = self.empty(&[b, n, d], dt, "residual")?;
        ops::linear(&patches, &pw, Some(&params.get("patch_embedding.bias")?), &x)?;
        params.release(u)?;
        cap("patch_embedding.out", &x);

        // Time embedding in fp32, then temb rounded to the compute dtype.
        let sinus = Tensor::from_f32(&self.dev, &[b, cfg.freq_dim], DType::F32, &timestep_embedding(&inputs.timestep, cfg.freq_dim))?;
        cap("condition_embedder.timesteps_proj.out", &sinus);
        let t1 = self.empty(&[b, d], DType::F32, "temb")?;
        let u = self.acquire(params, &mut unit, "condition_embedder.time_embedder.linear_1")?;
        ops::linear(&sinus, &params.get("condition_embedder.time_embedder.linear_1.weight")?, Some(&params.get("condition_embedder.time_embedder.linear_1.bias")?), &t1)?;
        params.release(u)?;
        ops::silu(&t1, &t1)?;
        let temb32 = self.empty(&[b, d], DType::F32, "temb")?;
        let u = self.acquire(params, &mut unit, "condition_embedder.time_embedder.linear_2")?;
        ops::linear(&t1, &params.get("condition_embedder.time_embedder.linear_2.weight")?, Some(&params.get("condition_embedder.time_embedder.linear_2.bias")?), &temb32)?;
        params.release(u)?;
        cap("condition_embedder.time_embedder.out", &temb32);
        let temb = self.empty(&[b, d], dt, "temb")?;
        ops::cast(&temb32, &temb)?;
        cap("condition_embedder.temb", &temb);
        let temb_act = self.empty(&[b, d], dt, "temb")?;
        ops::silu(&temb, &temb_act)?;
        let tproj = self.empty(&[b, 6 * d], dt, "timestep_proj")?;
        let u = self.acquire(params, &mut unit, "condition_embedder.time_proj")?;
        ops::linear(&temb_act, &params.get("condition_embedder.time_proj.weight")?, Some(&params.get("condition_embedder.time_proj.bias")?), &tproj)?;
        params.release(u)?;
        cap("condition_embedder.timestep_proj", &tproj);

        // Text projection: Linear, GELU(tanh), Linear over all L positions (padding included).
        let l = ctx.dim(1);
        let h1 = self.empty(&[b, l, d], dt, "text")?;
        let u = self.acquire(params, &mut unit, "condition_embedder.text_embedder.linear_1")?;
        ops::linear(ctx, &params.get("condition_embedder.text_embedder.linear_1.weight")?, Some(&params.get("condition_embedder.text_embedder.linear_1.bias")?), &h1)?;
        params.release(u)?;
        ops::gelu(&h1, &h1, GeluApprox::Tanh)?;
        let text = self.empty(&[b, l, d], dt, "text")?;
        let u = self.acquire(params, &mut unit, "condition_embedder.text_embedder.linear_2")?;
        ops::linear(&h1, &params.get("condition_embedder.text_embedder.linear_2.weight")?, Some(&params.get("condition_embedder.text_embedder.linear_2.bias")?), &text)?;
        params.release(u)?;
        drop(h1);
        cap("condition_embedder.text", &text);

        // Image projection (I2V): FP32LayerNorm, Linear, GELU(erf), Linear, FP32LayerNorm.
        let image = match img {
            Some(img) => {
                let (li, idim) = (img.dim(1), img.dim(2));
                let p = "condition_embedder.image_embedder";
                let n1 = self.empty(&[b, li, idim], dt, "image")?;
                let u = self.acquire(params, &mut unit, &format!("{p}.norm1"))?;
                ops::layer_norm(img, Some(&params.get(&format!("{p}.norm1.weight"))?), Some(&params.get(&format!("{p}.norm1.bias"))?), 1e-5, &n1)?;
                params.release(u)?;
                let h = self.empty(&[b, li, idim], dt, "image")?;
                let u = self.acquire(params, &mut unit, &format!("{p}.ff.net.0.proj"))?;
                ops::linear(&n1, &params.get(&format!("{p}.ff.net.0.proj.weight"))?, Some(&params.get(&format!("{p}.ff.net.0.proj.bias"))?), &h)?;
                params.release(u)?;
                ops::gelu(&h, &h, GeluApprox::Erf)?;
                let h2 = self.empty(&[b, li, d], dt, "image")?;
                let u = self.acquire(params, &mut unit, &format!("{p}.ff.net.2"))?;
                ops::linear(&h, &params.get(&format!("{p}.ff.net.2.weight"))?, Some(&params.get(&format!("{p}.ff.net.2.bias"))?), &h2)?;
                params.release(u)?;
                let out = self.empty(&[b, li, d], dt, "image")?;
                let u = self.acquire(params, &mut unit, &format!("{p}.norm2"))?;
                ops::layer_norm(&h2, Some(&params.get(&format!("{p}.norm2.weight"))?), Some(&params.get(&format!("{p}.norm2.bias"))?), 1e-5, &out)?;
                params.release(u)?;
                cap("condition_embedder.image", &out);
                Some(out)
            }
            None => None,
        };

        let tproj6 = tproj.reshape(&[b, 6, d])?;
        let arena = Arena::new(self, b, n, text.dim(1), image.as_ref().map(|t| t.dim(1)))?;
        let mut other = arena.residual.clone();
        for i in 0..cfg.num_layers {
            let _r = ops::range("wan.block");
            let mut blk = Block { t: self, params: &mut *params, next_unit: &mut unit, b, n, d, a: &arena };
            blk.run(i, &x, &other, &tproj6, &text, image.as_ref(), &cos, &sin, capturing, &mut cap)?;
            // The block's output is in `other`; its input buffer is free for the next block's output.
            std::mem::swap(&mut x, &mut other);
            cap(&format!("blocks.{i}.out"), &x);
        }

        // Output head: modulation from temb (not timestep_proj), modulate in f32, proj_out, unpatchify.
        let u = self.acquire(params, &mut unit, "head")?;
        let table = params.get("scale_shift_table")?;
        let shift = self.empty(&[b, d], DType::F32, "head shift")?;
        let scale = self.empty(&[b, d], DType::F32, "head scale")?;
        ops::add_rows_f32(&table.narrow(1, 0, 1)?, &temb, &shift)?;
        ops::add_rows_f32(&table.narrow(1, 1, 1)?, &temb, &scale)?;
        params.release(u)?;
        // The last block's input buffer is free: the head writes there rather than allocating a fifth
        // [B, N, D] buffer while the arena is alive (335 MB at 14B 480p-81f, above the planner's estimate).
        let xo = other;
        ops::layer_norm_modulate(&x, &scale, &shift, cfg.eps as f32, &xo)?;
        cap("norm_out_modulated", &xo);
        let po = self.empty(&[b, n, cfg.patch_features_out()], dt, "proj_out")?;
        let u = self.acquire(params, &mut unit, "proj_out")?;
        ops::linear(&xo, &params.get("proj_out.weight")?, Some(&params.get("proj_out.bias")?), &po)?;
        params.release(u)?;
        cap("proj_out.out", &po);
        let out = self.empty(&[b, cfg.out_channels, s[2], s[3], s[4]], dt, "sample")?;
        ops::unpatchify(&po, cfg.patch_size, &out)?;
        cap("sample", &out);
        debug_assert_eq!(unit, self.units.len());
        match cap_err {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }
}

/// Activation buffers of the block loop, allocated once per forward ("no allocation inside the
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
struct Arena {
    residual: Tensor,
    s: [Tensor; 5],
    /// s2, s3, s4 as one [3, B·N, D] stack: the self-attention's q, k, v from one batched GEMM.
    qkv: Tensor,
    hidden: Tensor,
    kt: Tensor,
    vt: Tensor,
    image_kv: Option<(Tensor, Tensor)>,
    modulation: Tensor,
}

impl Arena {
    /// `s2`, `s3`, `s4` and `hidden` share one region: the FFN runs after the last read of s2..s4 and
    /// the next block writes them after the FFN's last read of `hidden` (one stream orders both).
    fn new(t: &WanTransformer, b: usize, n: usize, l: usize, li: Option<usize>) -> Result<Arena> {
        let (d, f, dt) = (t.cfg.inner_dim(), t.cfg.ffn_dim, t.precision.compute());
        let nd = |what: &str| t.empty(&[b, n, d], dt, what);
        let tail = t.empty(&[b * n * (3 * d).max(f)], dt, "block scratch + ffn hidden")?;
        let part = |k: usize| Tensor::from_buffer(tail.buffer().clone(), tail.byte_offset() + (k * b * n * d * dt.size()) as u64, &[b, n, d], dt);
        Ok(Arena {
            residual: nd("residual")?,
            s: [nd("block scratch")?, nd("block scratch")?, part(0)?, part(1)?, part(2)?],
            qkv: Tensor::from_buffer(tail.buffer().clone(), tail.byte_offset(), &[3, b * n, d], dt)?,
            hidden: Tensor::from_buffer(tail.buffer().clone(), tail.byte_offset(), &[b, n, f], dt)?,
            kt: t.empty(&[b, l, d], dt, "text k")?,
            vt: t.empty(&[b, l, d], dt, "text v")?,
            image_kv: match li {
                Some(li) => Some((t.empty(&[b, li, d], dt, "image k")?, t.empty(&[b, li, d], dt, "image v")?)),
                None => None,
            },
            modulation: t.empty(&[b, 6, d], DType::F32, "modulation")?,
        })
    }
}

struct Block<'a> {
    t: &'a WanTransformer,
    params: &'a mut dyn ParamSource,
    next_unit: &'a mut usize,
    b: usize,
    n: usize,
    d: usize,
    a: &'a Arena,
}

impl Block<'_> {
    fn acquire(&mut self, name: &str) -> Result<usize> {
        self.t.acquire(&mut *self.params, self.next_unit, name)
    }

    /// `out = x · W + b` for Linear unit `name`, acquiring and releasing it around the GEMM.
    fn linear(&mut self, name: &str, x: &Tensor, out: &Tensor) -> Result<()> {
        let u = self.acquire(name)?;
        ops::linear(x, &self.params.get(&format!("{name}.weight"))?, Some(&self.params.get(&format!("{name}.bias"))?), out)?;
        self.params.release(u)
    }

    /// The self-attention's q, k, v of `x` into `qkv` [3, B·N, D] from unit `{p}.attn1.to_qkv`: one
    /// batched GEMM over the unit's stacked weights (unless `WANRT_QKV_STACK=0`, see [`stack_qkv`]). Every parameter source packs a unit the same way,
    /// so whether the weights are stacked depends only on the shapes (each weight and bias a multiple of
    /// the 256-byte alignment: D·size % 256 == 0), never on where the weights live; otherwise three
    /// GEMMs. Either way every mode computes the same bits.
    fn qkv(&mut self, p: &str, x: &Tensor, qkv: &Tensor) -> Result<()> {
        let u = self.acquire(&format!("{p}.attn1.to_qkv"))?;
        let get = |part: &str, what: &str| self.params.get(&format!("{p}.attn1.{part}.{what}"));
        let parts = ["to_q", "to_k", "to_v"];
        let w = parts.iter().map(|l| get(l, "weight")).collect::<Result<Vec<_>>>()?;
        let b = parts.iter().map(|l| get(l, "bias")).collect::<Result<Vec<_>>>()?;
        let x2 = x.reshape(&[qkv.dim(1), qkv.dim(2)])?;
        match (stacked(&w)?, stacked(&b)?) {
            (Some(w3), Some(b3)) if stack_qkv() => ops::linear_stack(&x2, &w3, Some(&b3), qkv)?,
            _ => {
                for j in 0..3 {
                    ops::linear(&x2, &w[j], Some(&b[j]), &qkv.narrow(0, j, 1)?.reshape(&[qkv.dim(1), qkv.dim(2)])?)?;
                }
            }
        }
        self.params.release(u)
    }

    #[allow(clippy::too_many_arguments)]
    fn run(
        &mut self,
        i: usize,
        x: &Tensor,
        out: &Tensor,
        tproj6: &Tensor,
        text: &Tensor,
        image: Option<&Tensor>,
        cos: &Tensor,
        sin: &Tensor,
        capturing: bool,
        cap: &mut dyn FnMut(&str, &Tensor),
    ) -> Result<()> {
        let (b, n, d) = (self.b, self.n, self.d);
        let a = self.a;
        let [s0, s1, s2, s3, s4] = &a.s;
        let cfg = &self.t.cfg;
        let eps = cfg.eps as f32;
        let heads = cfg.num_attention_heads;
        let hd = cfg.attention_head_dim;
        let scale = 1.0 / (hd as f32).sqrt();
        let p = format!("blocks.{i}");
        let heads4 = |t: &Tensor, len: usize| t.reshape(&[b, len, heads, hd]);

        // Modulation in f32: scale_shift_table + f32(timestep_proj), six [B, D] chunks.
        let small = self.acquire(&p)?;
        let m = &a.modulation;
        ops::add_rows_f32(&self.params.get(&format!("{p}.scale_shift_table"))?, tproj6, m)?;
        let chunk = |k: usize| m.narrow(1, k, 1);
        // The block's small parameters are needed until its end while its Linears stream through the
        // offload slots: copy them (a few KiB) so the unit's slot is free for the next uploads.
        let w = |s: &Block, name: &str| -> Result<Tensor> {
            let src = s.params.get(&format!("{p}.{name}"))?;
            let t = s.t.empty(src.shape(), src.dtype(), name)?;
            t.copy_from(&src)?;
            Ok(t)
        };
        let norm_q1 = w(self, "attn1.norm_q.weight")?;
        let norm_k1 = w(self, "attn1.norm_k.weight")?;
        let norm2_w = w(self, "norm2.weight")?;
        let norm2_b = w(self, "norm2.bias")?;
        let norm_q2 = w(self, "attn2.norm_q.weight")?;
        let norm_k2 = w(self, "attn2.norm_k.weight")?;
        let norm_added_k = if image.is_some() { Some(w(self, "attn2.norm_added_k.weight")?) } else { None };
        self.params.release(small)?;

        // (a) self-attention
        ops::layer_norm_modulate(x, &chunk(1)?, &chunk(0)?, eps, s0)?;
        if i == 0 {
            cap("blocks.0.norm1_modulated", s0);
        }
        // q, k, v land in s2, s3, s4 (the arena's `qkv` stack).
        self.qkv(&p, s0, &a.qkv)?;
        if i == 0 && capturing {
            // Only for comparing with the reference: the fused kernel below never materializes it.
            let qn = self.t.empty(&[b, n, d], self.t.precision.compute(), "q_norm")?;
            ops::rms_norm(s2, Some(&norm_q1), eps, &qn)?;
            cap("blocks.0.attn1.q_norm", &qn);
        }
        let (q4, k4) = (heads4(s2, n)?, heads4(s3, n)?);
        ops::rms_norm_rope(&q4, Some(&norm_q1), cos, sin, eps, &q4)?;
        ops::rms_norm_rope(&k4, Some(&norm_k1), cos, sin, eps, &k4)?;
        if i == 0 {
            cap("blocks.0.attn1.q_rope", &q4);
        }
        ops::attention(&q4, &k4, &heads4(s4, n)?, None, scale, &heads4(s1, n)?)?;
        if i == 0 {
            cap("blocks.0.attn1.sdpa", s1);
        }
        self.linear(&format!("{p}.attn1.to_out.0"), s1, s0)?;
        if i == 0 {
            cap("blocks.0.attn1.out", s0);
        }
        ops::gated_residual(x, s0, &chunk(2)?, out)?;
        if i == 0 {
            cap("blocks.0.after_attn1", out);
        }

        // (b) cross-attention (text, plus image K/V for I2V); `x` is free from here on.
        ops::layer_norm(out, Some(&norm2_w), Some(&norm2_b), eps, s0)?;
        if i == 0 {
            cap("blocks.0.norm2.out", s0);
        }
        let l = text.dim(1);
        self.linear(&format!("{p}.attn2.to_q"), s0, s1)?;
        self.linear(&format!("{p}.attn2.to_k"), text, &a.kt)?;
        self.linear(&format!("{p}.attn2.to_v"), text, &a.vt)?;
        ops::rms_norm(s1, Some(&norm_q2), eps, s1)?;
        ops::rms_norm(&a.kt, Some(&norm_k2), eps, &a.kt)?;
        let q4 = heads4(s1, n)?;
        ops::attention(&q4, &heads4(&a.kt, l)?, &heads4(&a.vt, l)?, None, scale, &heads4(s4, n)?)?;
        if let (Some(img), Some((ki, vi))) = (image, a.image_kv.as_ref()) {
            let li = img.dim(1);
            self.linear(&format!("{p}.attn2.add_k_proj"), img, ki)?;
            self.linear(&format!("{p}.attn2.add_v_proj"), img, vi)?;
            ops::rms_norm(ki, norm_added_k.as_ref(), eps, ki)?;
            ops::attention(&q4, &heads4(ki, li)?, &heads4(vi, li)?, None, scale, &heads4(s2, n)?)?;
            if i == 0 {
                cap("blocks.0.attn2.sdpa_img", s2);
            }
            ops::add(s4, s2, s4)?;
        }
        if i == 0 {
            // The reference records the input of to_out: for I2V the sum of the text and image halves.
            cap("blocks.0.attn2.sdpa", s4);
        }
        self.linear(&format!("{p}.attn2.to_out.0"), s4, s3)?;
        if i == 0 {
            cap("blocks.0.attn2.out", s3);
        }
        ops::add(out, s3, x)?;
        if i == 0 {
            cap("blocks.0.after_attn2", x);
        }

        // (c) feed-forward
        ops::layer_norm_modulate(x, &chunk(4)?, &chunk(3)?, eps, s0)?;
        if i == 0 {
            cap("blocks.0.norm3_modulated", s0);
        }
        let h = &a.hidden;
        self.linear(&format!("{p}.ffn.net.0.proj"), s0, h)?;
        ops::gelu(h, h, GeluApprox::Tanh)?;
        if i == 0 {
            cap("blocks.0.ffn.act", h);
        }
        self.linear(&format!("{p}.ffn.net.2"), h, s1)?;
        if i == 0 {
            cap("blocks.0.ffn.out", s1);
        }
        ops::gated_residual(x, s1, &chunk(5)?, out)
    }
}

/// `ts` as one [G, ..shape] tensor when they lie back to back in one buffer with one shape and dtype.
fn stacked(ts: &[Tensor]) -> Result<Option<Tensor>> {
    let Some(first) = ts.first() else { return Ok(None) };
    let len = first.byte_len();
    let adjacent = ts.iter().enumerate().all(|(j, t)| {
        Arc::ptr_eq(t.buffer(), first.buffer())
            && t.shape() == first.shape()
            && t.dtype() == first.dtype()
            && t.is_contiguous()
            && t.byte_offset() == first.byte_offset() + j as u64 * len
    });
    if !adjacent {
        return Ok(None);
    }
    let mut shape = vec![ts.len()];
    shape.extend_from_slice(first.shape());
    Tensor::from_buffer(first.buffer().clone(), first.byte_offset(), &shape, first.dtype()).map(Some)
}

/// q, k, v come from one batched GEMM (verified on an H100: tests/gpu_gemm.rs, the fixture and
/// offload tests); `WANRT_QKV_STACK=0` computes three GEMMs instead, for comparison. Process-wide,
/// so every offload mode still computes the same bits.
fn stack_qkv() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("WANRT_QKV_STACK").map_or(true, |v| v != "0"))
}
