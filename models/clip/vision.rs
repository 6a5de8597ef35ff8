//! transformers' `CLIPVisionModel` (modeling_clip.py) on the runtime, as Wan I2V uses it
//! (diffusers pipeline_wan_i2v.py `encode_image`): the patch embedding, class token
//! and positions, the pre-LayerNorm, and the encoder layers up to the penultimate one, whose output
//! (`hidden_states[-2]`, all tokens, no post-LayerNorm) is the image embedding. The last layer, the
//! post-LayerNorm and the projection are never computed.
//!
//! Offload units: `vision_model.embeddings`, `vision_model.pre_layrnorm`, and per layer
//! `self_attn` (layer_norm1 with q/k/v stacked for one batched GEMM), `self_attn.out_proj`,
//! `mlp.fc1` (with layer_norm2), `mlp.fc2`.

use std::path::Path;

use serde::Deserialize;

use crate::nn::{linear_group, Linear, Norm};
use crate::wan::Precision;
use wanrt_runtime::arena::{ArenaPlan, Buf};
use wanrt_runtime::offload::{Engine, Forward, ModelUnits, Param, VarBuilder};
use wanrt_runtime::ops::{self, GeluApprox};
use wanrt_runtime::tensor::f32_to_bytes;
use wanrt_runtime::{Error, Result, Tensor};

/// `CLIPVisionConfig` (the keys the vision tower uses).
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct ClipVisionConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub patch_size: usize,
    pub image_size: usize,
    #[serde(default = "d_channels")]
    pub num_channels: usize,
    #[serde(default = "d_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "d_act")]
    pub hidden_act: String,
}

fn d_channels() -> usize {
    3
}
fn d_eps() -> f64 {
    1e-5
}
fn d_act() -> String {
    "gelu".into()
}

const MAX_CONFIG_BYTES: u64 = 1 << 20;

impl ClipVisionConfig {
    /// laion/CLIP-ViT-H-14-laion2B-s32B-b79K's vision tower, as Wan2.1 I2V's `image_encoder/` holds it.
    pub fn vit_h_14() -> ClipVisionConfig {
        ClipVisionConfig {
            hidden_size: 1280,
            intermediate_size: 5120,
            num_hidden_layers: 32,
            num_attention_heads: 16,
            patch_size: 14,
            image_size: 224,
            num_channels: 3,
            layer_norm_eps: 1e-5,
            hidden_act: "gelu".into(),
        }
    }

    /// Reads and validates `config.json` (a file or a folder holding one); a full `CLIPConfig` with a
    /// `vision_config` section is read from that section.
    pub fn from_path(path: &Path) -> Result<ClipVisionConfig> {
        let file = if path.is_dir() { path.join("config.json") } else { path.to_path_buf() };
        let io = |e| Error::Io { path: file.clone(), source: e };
        let len = std::fs::metadata(&file).map_err(io)?.len();
        if len > MAX_CONFIG_BYTES {
            return Err(Error::File { path: file, msg: format!("{len} bytes is not a CLIP config (at most {MAX_CONFIG_BYTES} bytes read)") });
        }
        let text = std::fs::read(&file).map_err(io)?;
        let bad = |e: String| Error::File { path: file.clone(), msg: e };
        let v: serde_json::Value = serde_json::from_slice(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
        let section = v.get("vision_config").cloned().unwrap_or(v);
        let cfg: ClipVisionConfig = serde_json::from_value(section).map_err(|e| bad(format!("not a CLIPVisionModel config: {e}")))?;
        cfg.validate().map_err(|e| bad(e.to_string()))?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<()> {
        if self.hidden_act != "gelu" {
            return Err(Error::invalid(format!("hidden_act {:?}: only \"gelu\" (ViT-H/14's) is supported", self.hidden_act)));
        }
        let bounds: [(&str, usize, usize, usize); 7] = [
            ("hidden_size", self.hidden_size, 1, 1 << 14),
            ("intermediate_size", self.intermediate_size, 1, 1 << 16),
            ("num_hidden_layers", self.num_hidden_layers, 2, 256),
            ("num_attention_heads", self.num_attention_heads, 1, 256),
            ("patch_size", self.patch_size, 1, 1024),
            ("image_size", self.image_size, 1, 4096),
            ("num_channels", self.num_channels, 3, 3),
        ];
        for (key, v, lo, hi) in bounds {
            if v < lo || v > hi {
                return Err(Error::invalid(format!("{key} = {v}: supported {lo}..={hi}")));
            }
        }
        if self.hidden_size % self.num_attention_heads != 0 || self.image_size % self.patch_size != 0 {
            return Err(Error::invalid(format!(
                "hidden_size {} must divide by num_attention_heads {}, image_size {} by patch_size {}",
                self.hidden_size, self.num_attention_heads, self.image_size, self.patch_size
            )));
        }
        if !(self.layer_norm_eps.is_finite() && self.layer_norm_eps > 0.0) {
            return Err(Error::invalid(format!("layer_norm_eps = {}: must be positive", self.layer_norm_eps)));
        }
        Ok(())
    }

    /// Tokens per image: the patches plus the class token.
    pub fn tokens(&self) -> usize {
        (self.image_size / self.patch_size).pow(2) + 1
    }

    /// Layers computed: up to the penultimate, whose output the pipeline takes.
    pub fn layers_used(&self) -> usize {
        self.num_hidden_layers - 1
    }
}

pub struct ClipVisionEmbeddings {
    pub class_embedding: Param,
    /// Conv2d(3 → D, patch, stride patch, no bias), run as a Linear over (c, kh, kw) patches.
    pub patch_embedding: Param,
    pub position_embedding: Param,
}

pub struct ClipEncoderLayer {
    pub layer_norm1: Norm,
    /// q_proj, k_proj, v_proj.
    pub qkv: [Linear; 3],
    pub out_proj: Linear,
    pub layer_norm2: Norm,
    pub fc1: Linear,
    pub fc2: Linear,
}

/// The vision tower of `CLIPVisionModel` up to its penultimate layer.
pub struct ClipVisionModel {
    pub cfg: ClipVisionConfig,
    pub precision: Precision,
    units: ModelUnits,
    pub embeddings: ClipVisionEmbeddings,
    pub pre_layrnorm: Norm,
    pub layers: Vec<ClipEncoderLayer>,
}

/// Keys of a `CLIPVisionModel(WithProjection)` checkpoint the image embedding never reads: the last
/// layer (`layers_used` and beyond), the post-LayerNorm, the projection, saved position ids.
pub fn is_unused_key(cfg: &ClipVisionConfig, key: &str) -> bool {
    let last = key.strip_prefix("vision_model.encoder.layers.").and_then(|r| r.split('.').next()).and_then(|i| i.parse::<usize>().ok());
    last.is_some_and(|i| i >= cfg.layers_used())
        || key.starts_with("vision_model.post_layernorm.")
        || key.starts_with("visual_projection.")
        || key == "vision_model.embeddings.position_ids"
}

struct Bufs {
    pixels: Buf,
    patches: Buf,
    patch_out: Buf,
    embeddings: Buf,
    x: Buf,
    normed: Buf,
    qkv: Buf,
    attn: Buf,
    proj: Buf,
    hidden: Buf,
}

impl ClipVisionModel {
    /// Declares the vision tower (no device, no weights); everything in the compute dtype.
    pub fn new(cfg: &ClipVisionConfig, precision: Precision) -> Result<ClipVisionModel> {
        cfg.validate()?;
        let (d, f, p, c) = (cfg.hidden_size, cfg.intermediate_size, cfg.patch_size, cfg.num_channels);
        let dt = precision.compute();
        let vb = VarBuilder::new(move |_| dt);
        let vm = vb.pp("vision_model");
        let emb = vm.pp("embeddings");
        let embeddings = emb.unit(|u| ClipVisionEmbeddings {
            class_embedding: u.param(&emb, "class_embedding", &[d]),
            patch_embedding: u.param(&emb.pp("patch_embedding"), "weight", &[d, c, p, p]),
            position_embedding: u.param(&emb.pp("position_embedding"), "weight", &[cfg.tokens(), d]),
        });
        let pre_layrnorm = Norm::unit(&vm.pp("pre_layrnorm"), d, true);
        let layers = (0..cfg.layers_used())
            .map(|i| {
                let l = vm.pp("encoder.layers").pp(i).block(i);
                let sa = l.pp("self_attn");
                let (qkv, layer_norm1) = sa.unit(|u| {
                    let names = ["q_proj", "k_proj", "v_proj"].map(|n| sa.pp(n));
                    // Weights, then biases: the three weights pack back to back for the stacked GEMM.
                    let w = names.clone().map(|n| u.param(&n, "weight", &[d, d]));
                    let b = names.map(|n| u.param(&n, "bias", &[d]));
                    ([0, 1, 2].map(|j| Linear { weight: w[j], bias: Some(b[j]) }), Norm::declare(u, &l.pp("layer_norm1"), d, true))
                });
                // Units in execution order: out_proj runs before layer_norm2 and fc1.
                let out_proj = Linear::unit(&sa.pp("out_proj"), d, d);
                let fc1 = l.pp("mlp.fc1");
                let (fc1, layer_norm2) = fc1.unit(|u| (Linear::declare(u, &fc1, d, f, true), Norm::declare(u, &l.pp("layer_norm2"), d, true)));
                ClipEncoderLayer { layer_norm1, qkv, out_proj, layer_norm2, fc1, fc2: Linear::unit(&l.pp("mlp.fc2"), f, d) }
            })
            .collect();
        Ok(ClipVisionModel { cfg: cfg.clone(), precision, units: vb.finish()?, embeddings, pre_layrnorm, layers })
    }

    pub fn units(&self) -> &ModelUnits {
        &self.units
    }

    fn plan(&self, b: usize) -> (ArenaPlan, Bufs) {
        let c = &self.cfg;
        let dt = self.precision.compute();
        let (d, n, s, p) = (c.hidden_size, c.tokens(), c.image_size, c.patch_size);
        let np = n - 1;
        let mut a = ArenaPlan::new();
        let bufs = Bufs {
            pixels: a.buffer("clip pixels", &[b, c.num_channels, 1, s, s], dt),
            patches: a.buffer("clip patches", &[b, np, c.num_channels * p * p], dt),
            patch_out: a.buffer("clip patch embeds", &[b, np, d], dt),
            embeddings: a.buffer("clip embeddings", &[b, n, d], dt),
            x: a.buffer("clip residual", &[b, n, d], dt),
            normed: a.buffer("clip normed", &[b, n, d], dt),
            qkv: a.buffer("clip qkv", &[3, b * n, d], dt),
            attn: a.buffer("clip attention", &[b, n, d], dt),
            proj: a.buffer("clip projection", &[b, n, d], dt),
            hidden: a.buffer("clip mlp hidden", &[b, n, c.intermediate_size], dt),
        };
        (a, bufs)
    }

    /// Device bytes an encode of `b` images allocates (its arena), for the planner.
    pub fn activation_bytes(&self, b: usize) -> Result<u64> {
        if b == 0 {
            return Err(Error::invalid("clip: a batch needs at least one image"));
        }
        self.plan(b).0.bytes()
    }

    /// [`Self::activation_bytes`] plus cuBLASLt's workspace and a tenth for the pool's fragmentation.
    pub fn activation_peak(&self, b: usize) -> Result<u64> {
        let peak = self.activation_bytes(b)? + (32 << 20);
        Ok(peak + peak / 10)
    }

    /// The image embedding (`hidden_states[-2]`): (B, tokens, hidden) in the compute dtype, from
    /// `pixel_values` (B, 3, image_size, image_size) f32 as the image processor gives them.
    /// `capture` receives `embeddings`, `hidden_states.{i}` and `image_embeds`.
    pub fn forward(&self, engine: &Engine, pixel_values: &[f32], batch: usize, mut capture: Option<&mut crate::wan::transformer::Capture>) -> Result<Tensor> {
        if engine.units().units() != self.units.units() {
            return Err(Error::invalid("clip: the offload engine was made for other weight units (another config or precision)"));
        }
        let c = &self.cfg;
        let (s, p, d, n) = (c.image_size, c.patch_size, c.hidden_size, c.tokens());
        let want = batch * c.num_channels * s * s;
        if batch == 0 || pixel_values.len() != want {
            return Err(Error::invalid(format!("clip: {} pixel values for {batch} images of {}x{s}x{s} ({want} expected)", pixel_values.len(), c.num_channels)));
        }
        let dt = self.precision.compute();
        let dev = engine.device().clone();
        engine.forward(|fw| {
            let _r = ops::range("clip.forward");
            let (plan, bufs) = self.plan(batch);
            let a = plan.allocate(&dev)?;
            let mut cap = |name: &str, t: &Tensor| -> Result<()> {
                if let Some(cmap) = capture.as_deref_mut() {
                    let snap = Tensor::empty_named(&dev, t.shape(), t.dtype(), "capture")?;
                    snap.copy_from(t)?;
                    cmap.insert(name.to_string(), snap);
                }
                Ok(())
            };
            // transformers casts pixel_values to the model's dtype before the patch convolution.
            let pixels = a.get(bufs.pixels);
            pixels.write_bytes(&f32_to_bytes(pixel_values, dt))?;
            let (patches, patch_out, emb) = (a.get(bufs.patches), a.get(bufs.patch_out), a.get(bufs.embeddings));
            ops::patchify(pixels, [1, p, p], patches)?;
            {
                let e = &self.embeddings;
                let g = fw.unit(e.class_embedding.unit())?;
                let w = g.get(e.patch_embedding)?.reshape(&[d, patches.dim(2)])?;
                ops::linear(patches, &w, None, patch_out)?;
                let class = g.get(e.class_embedding)?.reshape(&[1, 1, d])?;
                let pos = g.get(e.position_embedding)?.reshape(&[1, n, d])?;
                for bi in 0..batch {
                    let row = emb.narrow(0, bi, 1)?;
                    row.narrow(1, 0, 1)?.copy_from(&class)?;
                    row.narrow(1, 1, n - 1)?.copy_from(&patch_out.narrow(0, bi, 1)?)?;
                    ops::add(&row, &pos, &row)?;
                }
            }
            cap("embeddings", emb)?;
            let x = a.get(bufs.x);
            let eps = c.layer_norm_eps as f32;
            self.pre_layrnorm.layer_norm(&fw.unit(self.pre_layrnorm.weight.unit())?, emb, eps, x)?;
            cap("hidden_states.0", x)?;
            for (i, layer) in self.layers.iter().enumerate() {
                let _r = ops::range("clip.layer");
                self.layer(fw, layer, &a, &bufs, batch)?;
                cap(&format!("hidden_states.{}", i + 1), x)?;
            }
            cap("image_embeds", x)?;
            Ok(x.clone())
        })
    }

    fn layer(&self, fw: &Forward<'_>, layer: &ClipEncoderLayer, a: &wanrt_runtime::arena::Arena, bufs: &Bufs, b: usize) -> Result<()> {
        let c = &self.cfg;
        let (n, d, h) = (c.tokens(), c.hidden_size, c.num_attention_heads);
        let eps = c.layer_norm_eps as f32;
        let (x, normed, qkv, attn, proj, hidden) = (a.get(bufs.x), a.get(bufs.normed), a.get(bufs.qkv), a.get(bufs.attn), a.get(bufs.proj), a.get(bufs.hidden));
        let heads4 = |t: &Tensor| t.reshape(&[b, n, h, d / h]);
        {
            let g = fw.unit(layer.qkv[0].weight.unit())?;
            layer.layer_norm1.layer_norm(&g, x, eps, normed)?;
            linear_group(&g, &layer.qkv, normed, qkv)?;
        }
        let part = |k: usize| qkv.narrow(0, k, 1)?.reshape(&[b, n, d]);
        let scale = 1.0 / ((d / h) as f32).sqrt();
        ops::attention(&heads4(&part(0)?)?, &heads4(&part(1)?)?, &heads4(&part(2)?)?, None, scale, &heads4(attn)?)?;
        layer.out_proj.run(fw, attn, proj)?;
        ops::add(x, proj, x)?;
        {
            let g = fw.unit(layer.fc1.weight.unit())?;
            layer.layer_norm2.layer_norm(&g, x, eps, normed)?;
            layer.fc1.forward(&g, normed, hidden)?;
        }
        ops::gelu(hidden, hidden, GeluApprox::Erf)?;
        layer.fc2.run(fw, hidden, proj)?;
        ops::add(x, proj, x)
    }
}
