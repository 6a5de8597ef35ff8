//! diffusers' `WanTransformer3DModel` (transformer_wan.py) on the runtime, reproducing its rounding
//! points (`WanTransformer3DModel.forward`, `WanTimeTextImageEmbedding`, `WanRotaryPosEmbed`,
//! `WanTransformerBlock`).
//!
//! The model is a declaration: building it declares every parameter once (keys from the module
//! path) and the offload units; it holds no weights. A forward borrows the weights from an offload
//! [`Engine`] made for [`WanTransformer3DModel::units`], whatever its plan (resident included: one
//! code path, so every placement computes the same bits), and allocates exactly the activation arena
//! [`WanTransformer3DModel::activation_bytes`] reports for the input.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use super::block::{BlockBufs, BlockCtx, WanTransformerBlock};
use super::config::{Precision, WanConfig};
use super::embeddings::{EmbedBufs, WanTimeTextImageEmbedding};
use super::parallel::SequenceParallel;
use super::weights::param_dtype;
use crate::nn::Linear;
use wanrt_runtime::arena::{ArenaPlan, Buf};
use wanrt_runtime::dist::SeqSplit;
use wanrt_runtime::offload::{Engine, Forward, ModelUnits, Param, VarBuilder};
use wanrt_runtime::ops;
use wanrt_runtime::tensor::f32_to_bytes;
use wanrt_runtime::{DType, Device, Error, Result, Tensor};

/// Text tokens the pipeline pads the prompt embedding to (UMT5, `max_sequence_length=512`).
pub const TEXT_TOKENS: usize = 512;
/// Image tokens of the I2V image embedding (CLIP ViT-H/14 at 224×224: 16×16 patches + class token).
pub const IMAGE_TOKENS: usize = 257;

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

/// The sizes a forward's memory depends on: batch, latent (T, H, W), text and image tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InputShape {
    pub batch: usize,
    pub frames: usize,
    pub height: usize,
    pub width: usize,
    pub text_tokens: usize,
    pub image_tokens: Option<usize>,
}

impl InputShape {
    /// The pipeline's shapes for latents of (T, H, W): 512 text tokens, and 257 image tokens for I2V.
    pub fn pipeline(cfg: &WanConfig, batch: usize, frames: usize, height: usize, width: usize) -> InputShape {
        InputShape { batch, frames, height, width, text_tokens: TEXT_TOKENS, image_tokens: cfg.is_i2v().then_some(IMAGE_TOKENS) }
    }
}

/// Named intermediate activations, for comparing against the reference fixtures.
pub type Capture = HashMap<String, Tensor>;

/// `patch_embedding`: a Conv3d with stride = kernel, run as a Linear over (c, kt, kh, kw) patches.
pub struct PatchEmbedding {
    pub weight: Param,
    pub bias: Param,
}

pub struct WanTransformer3DModel {
    pub cfg: WanConfig,
    pub precision: Precision,
    units: ModelUnits,
    pub patch_embedding: PatchEmbedding,
    pub condition_embedder: WanTimeTextImageEmbedding,
    pub blocks: Vec<WanTransformerBlock>,
    /// The output head's modulation table (`norm_out` has no parameters).
    pub scale_shift_table: Param,
    pub proj_out: Linear,
    /// RoPE cos/sin of the last grid, kept on the device: a denoising loop runs one grid every step.
    rope: Mutex<Option<RopeTables>>,
}

/// A token grid (frames, height, width), the rows kept (first token, count, padded count: a
/// sequence-parallel rank keeps its tokens' rows) and their RoPE cos/sin tables.
type RopeTables = ((usize, usize, usize), (usize, usize, usize), Tensor, Tensor);

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

/// Every activation buffer of one forward.
struct Bufs {
    patches: Buf,
    x: Buf,
    embed: EmbedBufs,
    block: BlockBufs,
    head_shift: Buf,
    head_scale: Buf,
    proj_out: Buf,
    sample: Buf,
    /// Sequence parallelism's extra buffers.
    sp: Option<SpBufs>,
}

/// A sequence-parallel forward's whole-sequence buffers: every patch (each rank embeds its own rows
/// from them), the all-gathered output rows and the real tokens' rows in order.
struct SpBufs {
    all_patches: Buf,
    gathered: Buf,
    padded_rows: Buf,
    rows: Buf,
}

/// Allocations are charged by the pool in multiples of this.
fn charged(bytes: u64) -> u64 {
    bytes.div_ceil(256) * 256
}

impl WanTransformer3DModel {
    /// Declares the model for `cfg` at `precision` (no device, no weights).
    pub fn new(cfg: &WanConfig, precision: Precision) -> Result<WanTransformer3DModel> {
        cfg.validate()?;
        let d = cfg.inner_dim();
        let vb = VarBuilder::new(move |key| param_dtype(key, precision));
        let pe = vb.pp("patch_embedding");
        let [pt, ph, pw] = cfg.patch_size;
        let patch_embedding = pe.unit(|u| PatchEmbedding { weight: u.param(&pe, "weight", &[d, cfg.in_channels, pt, ph, pw]), bias: u.param(&pe, "bias", &[d]) });
        let condition_embedder = WanTimeTextImageEmbedding::new(&vb.pp("condition_embedder"), cfg);
        let blocks = (0..cfg.num_layers).map(|i| WanTransformerBlock::new(&vb.pp("blocks").pp(i).block(i), cfg)).collect();
        let scale_shift_table = vb.unit_named("scale_shift_table", |u| u.param(&vb, "scale_shift_table", &[1, 2, d]));
        let proj_out = Linear::unit(&vb.pp("proj_out"), d, cfg.patch_features_out());
        Ok(WanTransformer3DModel {
            cfg: cfg.clone(),
            precision,
            units: vb.finish()?,
            patch_embedding,
            condition_embedder,
            blocks,
            scale_shift_table,
            proj_out,
            rope: Mutex::new(None),
        })
    }

    /// The offload units, in execution order: what an [`Engine`] for this model is made of.
    pub fn units(&self) -> &ModelUnits {
        &self.units
    }

    /// The arena of one forward; with `split`, of one sequence-parallel rank (its tokens through the
    /// blocks, the whole sequence at the ends).
    fn plan(&self, s: &InputShape, split: Option<&SeqSplit>) -> Result<(ArenaPlan, Bufs)> {
        let cfg = &self.cfg;
        let dt = self.precision.compute();
        let (gt, gh, gw) = cfg.grid(s.frames, s.height, s.width)?;
        let (b, tokens, d) = (s.batch, gt * gh * gw, cfg.inner_dim());
        let n = split.map_or(tokens, |sp| sp.per_part);
        let pf = cfg.in_channels * cfg.patch_size.iter().product::<usize>();
        let mut p = ArenaPlan::new();
        let patches = p.buffer("patches", &[b, n, pf], dt);
        let sp = split.map(|sp| {
            let po = cfg.patch_features_out();
            SpBufs {
                all_patches: p.buffer("patches (whole sequence)", &[b, tokens, pf], dt),
                gathered: p.buffer("proj_out (all ranks)", &[sp.parts, b, n, po], dt),
                padded_rows: p.buffer("proj_out (padded sequence)", &[b, sp.padded(), po], dt),
                rows: p.buffer("proj_out (sequence)", &[b, tokens, po], dt),
            }
        });
        let x = p.buffer("residual", &[b, n, d], dt);
        let embed = self.condition_embedder.plan(&mut p, cfg, dt, b, s.text_tokens, s.image_tokens);
        let block = BlockBufs::plan(&mut p, cfg, dt, b, n, s.text_tokens, s.image_tokens);
        let bufs = Bufs {
            patches,
            x,
            embed,
            block,
            head_shift: p.buffer("head shift", &[b, d], DType::F32),
            head_scale: p.buffer("head scale", &[b, d], DType::F32),
            proj_out: p.buffer("proj_out", &[b, n, cfg.patch_features_out()], dt),
            sample: p.buffer("sample", &[b, cfg.out_channels, s.frames, s.height, s.width], dt),
            sp,
        };
        Ok((p, bufs))
    }

    /// Device bytes a forward of shape `s` holds at its peak, besides the weights: its inputs, the
    /// arena it allocates (from the same plan the forward allocates), and the cached RoPE tables.
    pub fn activation_bytes(&self, s: &InputShape) -> Result<u64> {
        self.activation_bytes_split(s, None)
    }

    /// [`Self::activation_bytes`] of one rank of a sequence-parallel forward over `split`.
    pub fn activation_bytes_split(&self, s: &InputShape, split: Option<&SeqSplit>) -> Result<u64> {
        let cfg = &self.cfg;
        let es = self.precision.compute().size() as u64;
        let (gt, gh, gw) = cfg.grid(s.frames, s.height, s.width)?;
        let per = |dims: &[usize]| charged(dims.iter().map(|&v| v as u64).product::<u64>() * es);
        let inputs = per(&[s.batch, cfg.in_channels, s.frames, s.height, s.width])
            + per(&[s.batch, s.text_tokens, cfg.text_dim])
            + s.image_tokens.zip(cfg.image_dim).map_or(0, |(li, idim)| per(&[s.batch, li, idim]));
        let rope = 2 * charged((gt * gh * gw * cfg.attention_head_dim * 4) as u64);
        Ok(inputs + self.plan(s, split)?.0.bytes()? + rope)
    }

    /// What the offload planner reserves for the activations: [`Self::activation_bytes`] plus
    /// cuBLASLt's workspace and a tenth for the pool's fragmentation.
    pub fn activation_peak(&self, s: &InputShape) -> Result<u64> {
        let peak = self.activation_bytes(s)? + (32 << 20);
        Ok(peak + peak / 10)
    }

    /// RoPE tables for a token grid (fp32, from f64 angles: diffusers `transformer_wan.py`
    /// `WanRotaryPosEmbed`, `embeddings.py` `get_1d_rotary_pos_embed`), built when the grid changes and
    /// kept on the device.
    /// With `rows` (first token, count, padded count), only those tokens' rows, zero-padded.
    fn rope(&self, dev: &Arc<Device>, grid: (usize, usize, usize), rows: Option<(usize, usize, usize)>) -> Result<(Tensor, Tensor)> {
        let n = grid.0 * grid.1 * grid.2;
        let rows = rows.unwrap_or((0, n, n));
        let mut cache = self.rope.lock();
        if let Some((g, r, cos, sin)) = cache.as_ref() {
            if *g == grid && *r == rows && Arc::ptr_eq(cos.device(), dev) {
                return Ok((cos.clone(), sin.clone()));
            }
        }
        *cache = None; // the old grid's tables go back to the pool first
        let hd = self.cfg.attention_head_dim;
        let (cos, sin) = ops::rope::rope_tables(grid.0, grid.1, grid.2, hd)?;
        let (start, count, padded) = rows;
        let keep = |t: Vec<f32>| -> Vec<f32> {
            let mut v = t[start * hd..(start + count) * hd].to_vec();
            v.resize(padded * hd, 0.0);
            v
        };
        let t = (Tensor::from_f32(dev, &[padded, hd], DType::F32, &keep(cos))?, Tensor::from_f32(dev, &[padded, hd], DType::F32, &keep(sin))?);
        *cache = Some((grid, rows, t.0.clone(), t.1.clone()));
        Ok(t)
    }

    /// Checks the inputs against the config and returns their shape.
    pub fn input_shape(&self, inputs: &Inputs) -> Result<InputShape> {
        let cfg = &self.cfg;
        let dt = self.precision.compute();
        let x = &inputs.hidden_states;
        x.expect_dtype("wan.forward", "hidden_states", dt)?;
        let s = x.shape();
        if s.len() != 5 || s[1] != cfg.in_channels {
            return Err(Error::Shape { op: "wan.forward", name: "hidden_states".into(), expected: format!("[B, {}, T, H, W]", cfg.in_channels), got: s.to_vec() });
        }
        let b = s[0];
        cfg.grid(s[2], s[3], s[4])?;
        if inputs.timestep.len() != b {
            return Err(Error::invalid(format!("{} timesteps for a batch of {b}", inputs.timestep.len())));
        }
        let ctx = &inputs.encoder_hidden_states;
        ctx.expect_dtype("wan.forward", "encoder_hidden_states", dt)?;
        if ctx.rank() != 3 || ctx.dim(0) != b || ctx.dim(2) != cfg.text_dim {
            return Err(Error::Shape { op: "wan.forward", name: "encoder_hidden_states".into(), expected: format!("[{b}, L, {}]", cfg.text_dim), got: ctx.shape().to_vec() });
        }
        let image_tokens = match (&inputs.encoder_hidden_states_image, cfg.image_dim) {
            (Some(t), Some(idim)) => {
                t.expect_dtype("wan.forward", "encoder_hidden_states_image", dt)?;
                if t.rank() != 3 || t.dim(0) != b || t.dim(2) != idim {
                    return Err(Error::Shape { op: "wan.forward", name: "encoder_hidden_states_image".into(), expected: format!("[{b}, 257, {idim}]"), got: t.shape().to_vec() });
                }
                Some(t.dim(1))
            }
            (None, None) => None,
            (None, Some(_)) => return Err(Error::invalid("this I2V model needs encoder_hidden_states_image")),
            (Some(_), None) => return Err(Error::invalid("encoder_hidden_states_image given to a T2V model")),
        };
        Ok(InputShape { batch: b, frames: s[2], height: s[3], width: s[4], text_tokens: ctx.dim(1), image_tokens })
    }

    /// Runs the model with the weights of `engine` (made for [`Self::units`]). Returns
    /// `(B, out_channels, T, H, W)` in the compute dtype. `capture` receives named intermediates.
    pub fn forward(&self, engine: &Engine, inputs: &Inputs, capture: Option<&mut Capture>) -> Result<Tensor> {
        if engine.units().units() != self.units.units() {
            return Err(Error::invalid("wan.forward: the offload engine was made for other weight units (another config or precision)"));
        }
        let shape = self.input_shape(inputs)?;
        engine.forward(|fw| self.forward_in(fw, inputs, &shape, capture, None))
    }

    /// One rank's part of a sequence-parallel forward (every rank of `sp`'s communicator calls it with
    /// the same inputs, each on its own thread and device): returns the whole sample on every rank.
    pub fn forward_parallel(&self, engine: &Engine, inputs: &Inputs, sp: &SequenceParallel<'_>) -> Result<Tensor> {
        if engine.units().units() != self.units.units() {
            return Err(Error::invalid("wan.forward: the offload engine was made for other weight units (another config or precision)"));
        }
        if !Arc::ptr_eq(sp.comm.device(), engine.device()) {
            return Err(Error::invalid("wan.forward_parallel: the communicator's rank is on another device than the engine"));
        }
        let shape = self.input_shape(inputs)?;
        let (gt, gh, gw) = self.cfg.grid(shape.frames, shape.height, shape.width)?;
        if sp.split.tokens != gt * gh * gw {
            return Err(Error::invalid(format!("wan.forward_parallel: the split is for {} tokens, the inputs have {}", sp.split.tokens, gt * gh * gw)));
        }
        engine.forward(|fw| self.forward_in(fw, inputs, &shape, None, Some(sp)))
    }

    fn forward_in(&self, fw: &Forward<'_>, inputs: &Inputs, shape: &InputShape, mut capture: Option<&mut Capture>, sp: Option<&SequenceParallel<'_>>) -> Result<Tensor> {
        let _r = ops::range("wan.forward");
        let capturing = capture.is_some();
        let cfg = &self.cfg;
        let dev = fw.engine().device().clone();
        let x_in = &inputs.hidden_states;
        let (gt, gh, gw) = cfg.grid(shape.frames, shape.height, shape.width)?;
        // Captured tensors are copied: the arena reuses its buffers within the forward. The first
        // failure to copy one is the forward's error (reported once the forward is queued).
        let mut cap_err: Option<Error> = None;
        let mut cap = |name: &str, t: &Tensor| {
            if let (Some(c), None) = (capture.as_deref_mut(), &cap_err) {
                match Tensor::empty_named(&dev, t.shape(), t.dtype(), "capture").and_then(|c| c.copy_from(t).map(|_| c)) {
                    Ok(snap) => {
                        c.insert(name.to_string(), snap);
                    }
                    Err(e) => cap_err = Some(Error::invalid(format!("capturing {name}: {e}"))),
                }
            }
        };
        let rows = sp.map(|sp| {
            let r = sp.split.range(sp.rank());
            (r.start, r.len(), sp.split.per_part)
        });
        let (cos, sin) = self.rope(&dev, (gt, gh, gw), rows)?;
        cap("rope.cos", &cos);
        cap("rope.sin", &sin);
        let (plan, bufs) = self.plan(shape, sp.map(|sp| &sp.split))?;
        let a = plan.allocate(&dev)?;
        let b = shape.batch;
        let d = cfg.inner_dim();

        // Patch embedding: a Linear over (c, kt, kh, kw) patch vectors.
        let patches = a.get(bufs.patches);
        match (sp, &bufs.sp) {
            (Some(sp), Some(spb)) => {
                // Every rank patchifies the whole latent (small) and embeds its own rows, zero-padded.
                let all = a.get(spb.all_patches);
                ops::patchify(x_in, cfg.patch_size, all)?;
                let r = sp.split.range(sp.rank());
                patches.fill_bytes(0)?;
                for i in 0..b {
                    if !r.is_empty() {
                        patches.narrow(0, i, 1)?.narrow(1, 0, r.len())?.copy_from(&all.narrow(0, i, 1)?.narrow(1, r.start, r.len())?)?;
                    }
                }
            }
            _ => ops::patchify(x_in, cfg.patch_size, patches)?,
        }
        {
            let pe = &self.patch_embedding;
            let g = fw.unit(pe.weight.unit())?;
            let w = g.get(pe.weight)?.reshape(&[d, patches.dim(2)])?;
            ops::linear(patches, &w, Some(g.get(pe.bias)?), a.get(bufs.x))?;
        }
        cap("patch_embedding.out", a.get(bufs.x));

        let sinus = a.get(bufs.embed.sinus);
        sinus.write_bytes(&f32_to_bytes(&timestep_embedding(&inputs.timestep, cfg.freq_dim), DType::F32))?;
        cap("condition_embedder.timesteps_proj.out", sinus);
        let img = inputs.encoder_hidden_states_image.as_ref();
        self.condition_embedder.forward(fw, &a, &bufs.embed, &inputs.encoder_hidden_states, img, &mut cap)?;

        let tproj6 = a.get(bufs.embed.tproj).reshape(&[b, 6, d])?;
        let ctx = BlockCtx {
            cfg,
            arena: &a,
            bufs: &bufs.block,
            tproj6: &tproj6,
            text: a.get(bufs.embed.text),
            image: bufs.embed.image().map(|i| a.get(i)),
            cos: &cos,
            sin: &sin,
            capturing,
            sp,
        };
        let mut x = a.get(bufs.x).clone();
        let mut other = a.get(bufs.block.residual).clone();
        for (i, blk) in self.blocks.iter().enumerate() {
            let _r = ops::range("wan.block");
            blk.forward(fw, &ctx, i == 0, &x, &other, &mut cap)?;
            // The block's output is in `other`; its input buffer is free for the next block's output.
            std::mem::swap(&mut x, &mut other);
            cap(&format!("blocks.{i}.out"), &x);
        }

        // Output head: modulation from temb (not timestep_proj), modulate in f32, proj_out, unpatchify.
        let (shift, scale) = (a.get(bufs.head_shift), a.get(bufs.head_scale));
        {
            let g = fw.unit(self.scale_shift_table.unit())?;
            let table = g.get(self.scale_shift_table)?;
            let temb = a.get(bufs.embed.temb);
            ops::add_rows_f32(&table.narrow(1, 0, 1)?, temb, shift)?;
            ops::add_rows_f32(&table.narrow(1, 1, 1)?, temb, scale)?;
        }
        // The last block's input buffer is free: the head writes there.
        let xo = other;
        ops::layer_norm_modulate(&x, scale, shift, cfg.eps as f32, &xo)?;
        cap("norm_out_modulated", &xo);
        let po = a.get(bufs.proj_out);
        self.proj_out.run(fw, &xo, po)?;
        cap("proj_out.out", po);
        let out = a.get(bufs.sample);
        match (sp, &bufs.sp) {
            (Some(sp), Some(spb)) => {
                // Every rank's rows, then the real tokens' rows in order, then the whole sample.
                let padded = a.get(spb.padded_rows);
                sp.gather_rows(po, a.get(spb.gathered), padded)?;
                let rows = a.get(spb.rows);
                let tokens = sp.split.tokens;
                for i in 0..b {
                    rows.narrow(0, i, 1)?.copy_from(&padded.narrow(0, i, 1)?.narrow(1, 0, tokens)?)?;
                }
                ops::unpatchify(rows, cfg.patch_size, out)?;
            }
            _ => ops::unpatchify(po, cfg.patch_size, out)?,
        }
        cap("sample", out);
        match cap_err {
            Some(e) => Err(e),
            None => Ok(out.clone()),
        }
    }
}

/// Parameter counts of diffusers' `WanTransformer3DModel` at the published configs (the sum of its
/// parameter shapes, without the stray `norm_added_q`) check the unit list (a CPU unit test).
#[cfg(test)]
mod tests {
    use super::*;
    use crate::wan::weights::{is_stray_key, keeps_fp32};

    fn count(cfg: &WanConfig) -> u64 {
        let m = WanTransformer3DModel::new(cfg, Precision::Fp32).unwrap();
        m.units().units().iter().flat_map(|u| &u.tensors).map(|p| p.shape.iter().product::<usize>() as u64).sum()
    }

    #[test]
    fn parameter_counts_match_the_spec() {
        assert_eq!(count(&WanConfig::preset("wan2.1-t2v-1.3b").unwrap()), 1_418_996_800);
        assert_eq!(count(&WanConfig::preset("wan2.1-t2v-14b").unwrap()), 14_288_491_584);
        assert_eq!(count(&WanConfig::preset("wan2.1-i2v-14b-480p").unwrap()), 16_394_878_784);
    }

    #[test]
    fn fp32_kept_set_matches_diffusers() {
        for (name, kept) in [
            ("condition_embedder.time_embedder.linear_1.weight", true),
            ("blocks.3.scale_shift_table", true),
            ("scale_shift_table", true),
            ("blocks.0.norm2.weight", true),
            ("condition_embedder.image_embedder.norm1.bias", true),
            ("blocks.0.attn1.norm_q.weight", false),
            ("condition_embedder.time_proj.weight", false),
            ("blocks.0.attn2.norm_added_k.weight", false),
        ] {
            assert_eq!(keeps_fp32(name), kept, "{name}");
        }
        let m = WanTransformer3DModel::new(&WanConfig::preset("wan2.1-t2v-1.3b").unwrap(), Precision::Bf16).unwrap();
        let find = |n: &str| m.units().units().iter().flat_map(|u| &u.tensors).find(|p| p.name == n).unwrap().dtype;
        assert_eq!(find("blocks.0.norm2.bias"), DType::F32);
        assert_eq!(find("blocks.0.ffn.net.2.weight"), DType::BF16);
        assert_eq!(find("scale_shift_table"), DType::F32);
        assert!(is_stray_key("blocks.7.attn2.norm_added_q.weight"));
        assert!(!is_stray_key("blocks.7.attn2.norm_added_k.weight"));
    }
}
