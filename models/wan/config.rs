//! `WanTransformer3DModel` configuration: read from a Diffusers folder's `config.json`, or one of the
//! published presets (values from diffusers' `scripts/convert_wan_to_diffusers.py`
//! `get_transformer_config`).

use std::path::Path;

use serde::Deserialize;

use wanrt_runtime::{DType, Error, Result};

/// The transformer's architecture.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct WanConfig {
    #[serde(default = "d_patch")]
    pub patch_size: [usize; 3],
    pub num_attention_heads: usize,
    #[serde(default = "d_head")]
    pub attention_head_dim: usize,
    pub in_channels: usize,
    #[serde(default = "d_out")]
    pub out_channels: usize,
    #[serde(default = "d_text")]
    pub text_dim: usize,
    #[serde(default = "d_freq")]
    pub freq_dim: usize,
    pub ffn_dim: usize,
    pub num_layers: usize,
    #[serde(default = "d_true")]
    pub cross_attn_norm: bool,
    #[serde(default = "d_qk")]
    pub qk_norm: Option<String>,
    #[serde(default = "d_eps")]
    pub eps: f64,
    #[serde(default)]
    pub image_dim: Option<usize>,
    #[serde(default)]
    pub added_kv_proj_dim: Option<usize>,
    #[serde(default = "d_rope")]
    pub rope_max_seq_len: usize,
    #[serde(default)]
    pub pos_embed_seq_len: Option<usize>,
}

fn d_patch() -> [usize; 3] {
    [1, 2, 2]
}
fn d_head() -> usize {
    128
}
fn d_out() -> usize {
    16
}
fn d_text() -> usize {
    4096
}
fn d_freq() -> usize {
    256
}
fn d_true() -> bool {
    true
}
fn d_qk() -> Option<String> {
    Some("rms_norm_across_heads".into())
}
fn d_eps() -> f64 {
    1e-6
}
fn d_rope() -> usize {
    1024
}

/// config.json files above this are refused unread.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// The most tokens (batch × latent grid after patching) one forward may plan for: 55x a 720p
/// 81-frame video's 75,600, and small enough that the activation estimate stays in range.
pub const MAX_TOKENS: usize = 1 << 22;

/// Names accepted by `--preset`.
pub const PRESETS: [&str; 4] = ["wan2.1-t2v-1.3b", "wan2.1-t2v-14b", "wan2.1-i2v-14b-480p", "wan2.1-i2v-14b-720p"];

impl WanConfig {
    fn base(layers: usize, heads: usize, ffn: usize, in_channels: usize, image: bool) -> WanConfig {
        WanConfig {
            patch_size: d_patch(),
            num_attention_heads: heads,
            attention_head_dim: 128,
            in_channels,
            out_channels: 16,
            text_dim: 4096,
            freq_dim: 256,
            ffn_dim: ffn,
            num_layers: layers,
            cross_attn_norm: true,
            qk_norm: d_qk(),
            eps: 1e-6,
            image_dim: image.then_some(1280),
            added_kv_proj_dim: image.then_some(heads * 128),
            rope_max_seq_len: 1024,
            pos_embed_seq_len: None,
        }
    }

    /// A published variant by name (see [`PRESETS`]). The 480P and 720P I2V models share one architecture.
    pub fn preset(name: &str) -> Result<WanConfig> {
        match name.to_ascii_lowercase().as_str() {
            "wan2.1-t2v-1.3b" => Ok(WanConfig::base(30, 12, 8960, 16, false)),
            "wan2.1-t2v-14b" => Ok(WanConfig::base(40, 40, 13824, 16, false)),
            "wan2.1-i2v-14b-480p" | "wan2.1-i2v-14b-720p" => Ok(WanConfig::base(40, 40, 13824, 36, true)),
            other => Err(Error::invalid(format!("unknown preset {other:?}; known: {}", PRESETS.join(", ")))),
        }
    }

    /// Reads `config.json` from a Diffusers `transformer/` folder (or the file itself).
    pub fn from_path(path: &Path) -> Result<WanConfig> {
        let file = if path.is_dir() { path.join("config.json") } else { path.to_path_buf() };
        let io = |e| Error::Io { path: file.clone(), source: e };
        // A config is a few hundred bytes; a huge file is not one, and is not read into memory.
        let len = std::fs::metadata(&file).map_err(io)?.len();
        if len > MAX_CONFIG_BYTES {
            return Err(Error::File { path: file, msg: format!("{len} bytes is not a WanTransformer3DModel config (at most {MAX_CONFIG_BYTES} bytes read)") });
        }
        let text = std::fs::read(&file).map_err(io)?;
        WanConfig::from_json(&text).map_err(|e| Error::File { path: file, msg: e.to_string() })
    }

    /// Parses and validates a `config.json`'s bytes (errors do not name a file; [`WanConfig::from_path`]
    /// adds it). Unknown keys (`_class_name`, `_diffusers_version`) are ignored, as diffusers does.
    pub fn from_json(bytes: &[u8]) -> Result<WanConfig> {
        let cfg: WanConfig = serde_json::from_slice(bytes).map_err(|e| Error::invalid(format!("not a WanTransformer3DModel config: {e}")))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks the structure this implementation supports, and bounds every size so that each size
    /// derived from them (weights, activations, the offload plan's sums) stays in range: a config
    /// beyond them is an error naming the key, its value and the largest supported.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::invalid(m));
        for (key, value, lo, hi, published) in self.bounded() {
            if value < lo || value > hi {
                let what = if value < lo { format!("must be at least {lo}") } else { format!("is too large: at most {hi} supported") };
                return bad(format!("{key} {value} {what} (published Wan2.1 models use {published})"));
            }
        }
        if self.patch_size != [1, 2, 2] {
            return bad(format!("patch_size {:?} unsupported (Wan2.1 uses [1, 2, 2])", self.patch_size));
        }
        if self.attention_head_dim != 128 {
            return bad(format!("attention_head_dim {} unsupported (Wan uses 128)", self.attention_head_dim));
        }
        if self.qk_norm.as_deref() != Some("rms_norm_across_heads") {
            return bad(format!("qk_norm {:?} unsupported (Wan uses rms_norm_across_heads)", self.qk_norm));
        }
        if !self.cross_attn_norm {
            return bad("cross_attn_norm false is unsupported (every Wan2.1 model uses it)".into());
        }
        if self.freq_dim % 2 != 0 {
            return bad(format!("freq_dim {} must be even", self.freq_dim));
        }
        if self.image_dim.is_some() != self.added_kv_proj_dim.is_some() {
            return bad("image_dim and added_kv_proj_dim must be set together (I2V) or both absent (T2V)".into());
        }
        if self.added_kv_proj_dim.is_some_and(|d| d != self.inner_dim()) {
            return bad(format!("added_kv_proj_dim {:?} must equal the inner dim {}", self.added_kv_proj_dim, self.inner_dim()));
        }
        if self.pos_embed_seq_len.is_some() {
            return bad("pos_embed_seq_len (FLF2V) is not supported".into());
        }
        if !(self.eps > 0.0 && self.eps < 1.0) {
            return bad(format!("eps {} out of range (0, 1)", self.eps));
        }
        Ok(())
    }

    /// (key, value, least, largest supported, published values) of every size in the config. The
    /// bounds are far above the published models (4-16x) and keep the largest derived size, the
    /// activation peak at [`MAX_TOKENS`] tokens (4·N·D·4 bytes ≤ 2^43), and the weights (≤ 2^51
    /// bytes) well inside u64.
    fn bounded(&self) -> Vec<(&'static str, usize, usize, usize, &'static str)> {
        let mut v = vec![
            ("num_layers", self.num_layers, 1, 1024, "30 or 40"),
            ("num_attention_heads", self.num_attention_heads, 1, 1024, "12 or 40"),
            ("ffn_dim", self.ffn_dim, 1, 1 << 20, "8960 or 13824"),
            ("in_channels", self.in_channels, 1, 1024, "16 or 36"),
            ("out_channels", self.out_channels, 1, 1024, "16"),
            ("text_dim", self.text_dim, 1, 1 << 16, "4096"),
            ("freq_dim", self.freq_dim, 2, 1 << 16, "256"),
            ("rope_max_seq_len", self.rope_max_seq_len, 1, 1 << 16, "1024"),
        ];
        if let Some(d) = self.image_dim {
            v.push(("image_dim", d, 1, 1 << 16, "1280"));
        }
        v
    }

    /// D = heads × head_dim.
    pub fn inner_dim(&self) -> usize {
        self.num_attention_heads * self.attention_head_dim
    }

    pub fn is_i2v(&self) -> bool {
        self.image_dim.is_some()
    }

    /// Output features of `proj_out`: out_channels × prod(patch).
    pub fn patch_features_out(&self) -> usize {
        self.out_channels * self.patch_size.iter().product::<usize>()
    }

    /// Token grid (T', H', W') for latents of (frames, height, width); errors name the offending size.
    pub fn grid(&self, frames: usize, height: usize, width: usize) -> Result<(usize, usize, usize)> {
        let [pt, ph, pw] = self.patch_size;
        if frames == 0 || height == 0 || width == 0 || frames % pt != 0 || height % ph != 0 || width % pw != 0 {
            return Err(Error::invalid(format!(
                "latent size {frames}x{height}x{width} must be positive and divisible by the patch {:?}",
                self.patch_size
            )));
        }
        let g = (frames / pt, height / ph, width / pw);
        if g.0 > self.rope_max_seq_len || g.1 > self.rope_max_seq_len || g.2 > self.rope_max_seq_len {
            return Err(Error::invalid(format!("token grid {g:?} exceeds the RoPE table length {}", self.rope_max_seq_len)));
        }
        Ok(g)
    }
}

/// How the transformer computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    /// diffusers' mixed policy: bf16 weights and residual stream, fp32-kept modules (diffusers
    /// `transformer_wan.py` `WanTransformer3DModel._keep_in_fp32_modules`).
    Bf16,
    /// fp16 weights and activations with the same fp32-kept set.
    Fp16,
    /// fp32 end to end.
    Fp32,
}

impl std::str::FromStr for Precision {
    type Err = Error;
    fn from_str(s: &str) -> Result<Precision> {
        Precision::parse(s)
    }
}

impl Precision {
    pub fn parse(s: &str) -> Result<Precision> {
        match s.to_ascii_lowercase().as_str() {
            "bf16" | "bfloat16" => Ok(Precision::Bf16),
            "fp16" | "f16" | "float16" => Ok(Precision::Fp16),
            "fp32" | "f32" | "float32" => Ok(Precision::Fp32),
            _ => Err(Error::invalid(format!("unknown precision {s:?} (bf16, fp16 or fp32)"))),
        }
    }

    /// dtype of the Linear weights and of the residual stream.
    pub fn compute(self) -> DType {
        match self {
            Precision::Bf16 => DType::BF16,
            Precision::Fp16 => DType::F16,
            Precision::Fp32 => DType::F32,
        }
    }
}
