//! `UMT5Config` as transformers reads it from `text_encoder/config.json` (configuration_umt5.py),
//! with the google/umt5-xxl values Wan ships as the preset.

use std::path::Path;

use serde::Deserialize;

use wanrt_runtime::{Error, Result};

/// The encoder's architecture (the decoder keys of the config are ignored).
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Umt5Config {
    pub vocab_size: usize,
    pub d_model: usize,
    pub d_kv: usize,
    pub d_ff: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    #[serde(default = "d_buckets")]
    pub relative_attention_num_buckets: usize,
    #[serde(default = "d_distance")]
    pub relative_attention_max_distance: usize,
    #[serde(default = "d_eps")]
    pub layer_norm_epsilon: f64,
    #[serde(default = "d_proj")]
    pub feed_forward_proj: String,
    #[serde(default)]
    pub pad_token_id: usize,
    #[serde(default = "d_eos")]
    pub eos_token_id: usize,
}

fn d_buckets() -> usize {
    32
}
fn d_distance() -> usize {
    128
}
fn d_eps() -> f64 {
    1e-6
}
fn d_proj() -> String {
    "gated-gelu".into()
}
fn d_eos() -> usize {
    1
}

/// A config file is a few KiB; anything larger is not one.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

impl Umt5Config {
    /// google/umt5-xxl's encoder, as Wan2.1's `text_encoder/` holds it.
    pub fn umt5_xxl() -> Umt5Config {
        Umt5Config {
            vocab_size: 256_384,
            d_model: 4096,
            d_kv: 64,
            d_ff: 10_240,
            num_layers: 24,
            num_heads: 64,
            relative_attention_num_buckets: 32,
            relative_attention_max_distance: 128,
            layer_norm_epsilon: 1e-6,
            feed_forward_proj: "gated-gelu".into(),
            pad_token_id: 0,
            eos_token_id: 1,
        }
    }

    /// Reads and validates `config.json` (a file, or a folder holding one).
    pub fn from_path(path: &Path) -> Result<Umt5Config> {
        let file = if path.is_dir() { path.join("config.json") } else { path.to_path_buf() };
        let io = |e| Error::Io { path: file.clone(), source: e };
        let len = std::fs::metadata(&file).map_err(io)?.len();
        if len > MAX_CONFIG_BYTES {
            return Err(Error::File { path: file, msg: format!("{len} bytes is not a UMT5 config (at most {MAX_CONFIG_BYTES} bytes read)") });
        }
        let text = std::fs::read(&file).map_err(io)?;
        let cfg: Umt5Config = serde_json::from_slice(&text).map_err(|e| Error::File { path: file.clone(), msg: format!("not a UMT5EncoderModel config: {e}") })?;
        cfg.validate().map_err(|e| Error::File { path: file, msg: e.to_string() })?;
        Ok(cfg)
    }

    /// The structure this implementation supports, every size bounded so derived sizes stay in range.
    pub fn validate(&self) -> Result<()> {
        if self.feed_forward_proj != "gated-gelu" {
            return Err(Error::invalid(format!("feed_forward_proj {:?}: only \"gated-gelu\" (UMT5's) is supported", self.feed_forward_proj)));
        }
        let bounds: [(&str, usize, usize, usize); 7] = [
            ("vocab_size", self.vocab_size, 1, 1 << 20),
            ("d_model", self.d_model, 1, 1 << 16),
            ("d_kv", self.d_kv, 1, 1 << 10),
            ("d_ff", self.d_ff, 1, 1 << 18),
            ("num_layers", self.num_layers, 1, 1024),
            ("num_heads", self.num_heads, 1, 1024),
            ("relative_attention_num_buckets", self.relative_attention_num_buckets, 4, 1024),
        ];
        for (key, v, lo, hi) in bounds {
            if v < lo || v > hi {
                return Err(Error::invalid(format!("{key} = {v}: supported {lo}..={hi} (umt5-xxl: {})", xxl_value(key))));
            }
        }
        if self.relative_attention_max_distance < self.relative_attention_num_buckets / 2 || self.relative_attention_max_distance > 1 << 20 {
            return Err(Error::invalid(format!(
                "relative_attention_max_distance = {}: must be at least num_buckets / 2 and at most {}",
                self.relative_attention_max_distance,
                1 << 20
            )));
        }
        if !(self.layer_norm_epsilon.is_finite() && self.layer_norm_epsilon > 0.0) {
            return Err(Error::invalid(format!("layer_norm_epsilon = {}: must be positive", self.layer_norm_epsilon)));
        }
        Ok(())
    }

    /// Attention width: heads × d_kv (4096 in umt5-xxl, equal to d_model there but not in general).
    pub fn inner_dim(&self) -> usize {
        self.num_heads * self.d_kv
    }
}

fn xxl_value(key: &str) -> String {
    let x = Umt5Config::umt5_xxl();
    match key {
        "vocab_size" => x.vocab_size,
        "d_model" => x.d_model,
        "d_kv" => x.d_kv,
        "d_ff" => x.d_ff,
        "num_layers" => x.num_layers,
        "num_heads" => x.num_heads,
        _ => x.relative_attention_num_buckets,
    }
    .to_string()
}
