//! `AutoencoderKLWan` configuration (diffusers autoencoder_kl_wan.py, `AutoencoderKLWan.__init__`),
//! read from a Diffusers `vae/` folder's `config.json`; the Wan2.1 preset is diffusers
//! `scripts/convert_wan_to_diffusers.py` `convert_vae`.

use std::path::Path;

use serde::Deserialize;

use wanrt_runtime::{Error, Result};

/// The VAE's architecture and latent statistics.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct VaeConfig {
    #[serde(default = "d_base")]
    pub base_dim: usize,
    #[serde(default)]
    pub decoder_base_dim: Option<usize>,
    #[serde(default = "d_z")]
    pub z_dim: usize,
    #[serde(default = "d_mult")]
    pub dim_mult: Vec<usize>,
    #[serde(default = "d_res")]
    pub num_res_blocks: usize,
    #[serde(default)]
    pub attn_scales: Vec<f64>,
    #[serde(default = "d_tds")]
    pub temperal_downsample: Vec<bool>,
    #[serde(default)]
    pub dropout: f64,
    #[serde(default = "d_ch")]
    pub in_channels: usize,
    #[serde(default = "d_ch")]
    pub out_channels: usize,
    #[serde(default)]
    pub is_residual: bool,
    #[serde(default)]
    pub patch_size: Option<usize>,
    pub latents_mean: Vec<f64>,
    pub latents_std: Vec<f64>,
    #[serde(default = "d_st")]
    pub scale_factor_temporal: usize,
    #[serde(default = "d_ss")]
    pub scale_factor_spatial: usize,
}

fn d_base() -> usize {
    96
}
fn d_z() -> usize {
    16
}
fn d_mult() -> Vec<usize> {
    vec![1, 2, 4, 4]
}
fn d_res() -> usize {
    2
}
fn d_tds() -> Vec<bool> {
    vec![false, true, true]
}
fn d_ch() -> usize {
    3
}
fn d_st() -> usize {
    4
}
fn d_ss() -> usize {
    8
}

const MAX_CONFIG_BYTES: u64 = 1 << 20;

impl VaeConfig {
    /// Wan2.1's `vae/config.json` (the constructor defaults plus its latent statistics, as diffusers
    /// `scripts/convert_wan_to_diffusers.py` `convert_vae` writes them).
    pub fn wan2_1() -> VaeConfig {
        VaeConfig {
            base_dim: 96,
            decoder_base_dim: None,
            z_dim: 16,
            dim_mult: d_mult(),
            num_res_blocks: 2,
            attn_scales: vec![],
            temperal_downsample: d_tds(),
            dropout: 0.0,
            in_channels: 3,
            out_channels: 3,
            is_residual: false,
            patch_size: None,
            latents_mean: vec![
                -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508, 0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921,
            ],
            latents_std: vec![2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743, 3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160],
            scale_factor_temporal: 4,
            scale_factor_spatial: 8,
        }
    }

    /// Reads and validates `config.json` (a file, or a folder holding one).
    pub fn from_path(path: &Path) -> Result<VaeConfig> {
        let file = if path.is_dir() { path.join("config.json") } else { path.to_path_buf() };
        let io = |e| Error::Io { path: file.clone(), source: e };
        let len = std::fs::metadata(&file).map_err(io)?.len();
        if len > MAX_CONFIG_BYTES {
            return Err(Error::File { path: file, msg: format!("{len} bytes is not a VAE config (at most {MAX_CONFIG_BYTES} bytes read)") });
        }
        let text = std::fs::read(&file).map_err(io)?;
        let bad = |e: String| Error::File { path: file.clone(), msg: e };
        let cfg: VaeConfig = serde_json::from_slice(&text).map_err(|e| bad(format!("not an AutoencoderKLWan config: {e}")))?;
        cfg.validate().map_err(|e| bad(e.to_string()))?;
        Ok(cfg)
    }

    /// The Wan2.1 architecture family only: no attention in the down/up blocks, no Wan2.2 residual
    /// variant or patchifying, one temporal flag per downsampling level.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::invalid(m));
        if self.is_residual || self.patch_size.is_some() {
            return bad("is_residual / patch_size: only Wan2.1's VAE (is_residual false, patch_size null) is supported".into());
        }
        if !self.attn_scales.is_empty() {
            return bad(format!("attn_scales {:?}: only [] (Wan2.1's) is supported", self.attn_scales));
        }
        if self.dim_mult.len() < 2 || self.dim_mult.len() > 8 || self.dim_mult.iter().any(|&m| m == 0 || m > 64) {
            return bad(format!("dim_mult {:?}: 2 to 8 multipliers in 1..=64", self.dim_mult));
        }
        if self.temperal_downsample.len() + 1 != self.dim_mult.len() {
            return bad(format!("temperal_downsample {:?} needs {} flags (one per downsampling of dim_mult {:?})", self.temperal_downsample, self.dim_mult.len() - 1, self.dim_mult));
        }
        let bounds: [(&str, usize, usize, usize); 6] = [
            ("base_dim", self.base_dim, 1, 1024),
            ("z_dim", self.z_dim, 1, 256),
            ("num_res_blocks", self.num_res_blocks, 1, 16),
            ("in_channels", self.in_channels, 1, 16),
            ("out_channels", self.out_channels, 1, 16),
            ("decoder_base_dim", self.decoder_base_dim.unwrap_or(self.base_dim), 1, 1024),
        ];
        for (key, v, lo, hi) in bounds {
            if v < lo || v > hi {
                return bad(format!("{key} = {v}: supported {lo}..={hi}"));
            }
        }
        // The upsamplers halve their width: every decoder level's width must be even.
        if self.dims_decoder().iter().any(|d| d % 2 != 0) {
            return bad(format!("decoder widths {:?} must be even (the upsamplers halve them)", self.dims_decoder()));
        }
        if self.latents_mean.len() != self.z_dim || self.latents_std.len() != self.z_dim {
            return bad(format!("latents_mean / latents_std have {} / {} values, z_dim is {}", self.latents_mean.len(), self.latents_std.len(), self.z_dim));
        }
        if self.latents_mean.iter().any(|v| !v.is_finite()) || self.latents_std.iter().any(|v| !(v.is_finite() && *v > 0.0)) {
            return bad("latents_mean must be finite and latents_std positive".into());
        }
        let downs = self.temperal_downsample.iter().filter(|&&t| t).count();
        if self.scale_factor_temporal != 1 << downs || self.scale_factor_spatial != 1 << self.temperal_downsample.len() {
            return bad(format!(
                "scale factors (temporal {}, spatial {}) disagree with temperal_downsample {:?} ({}, {})",
                self.scale_factor_temporal,
                self.scale_factor_spatial,
                self.temperal_downsample,
                1 << downs,
                1 << self.temperal_downsample.len()
            ));
        }
        if self.dropout != 0.0 {
            return bad(format!("dropout = {}: inference only, 0 expected", self.dropout));
        }
        Ok(())
    }

    /// Encoder widths: `[base · m for m in [1] + dim_mult]` (WanEncoder3d `dims`).
    pub fn dims_encoder(&self) -> Vec<usize> {
        std::iter::once(1).chain(self.dim_mult.iter().copied()).map(|m| self.base_dim * m).collect()
    }

    /// Decoder widths: `[base · m for m in [dim_mult[-1]] + dim_mult[::-1]]` (WanDecoder3d `dims`).
    pub fn dims_decoder(&self) -> Vec<usize> {
        let base = self.decoder_base_dim.unwrap_or(self.base_dim);
        let last = *self.dim_mult.last().unwrap_or(&1);
        std::iter::once(last).chain(self.dim_mult.iter().rev().copied()).map(|m| base * m).collect()
    }

    /// The decoder's temporal upsampling flags: `temperal_downsample[::-1]`.
    pub fn temperal_upsample(&self) -> Vec<bool> {
        self.temperal_downsample.iter().rev().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wan2_1_preset_is_valid_and_has_the_published_widths() {
        let c = VaeConfig::wan2_1();
        c.validate().unwrap();
        assert_eq!(c.dims_encoder(), [96, 96, 192, 384, 384]);
        assert_eq!(c.dims_decoder(), [384, 384, 384, 192, 96]);
        assert_eq!(c.temperal_upsample(), [true, true, false]);
    }

    #[test]
    fn bad_configs_are_refused_with_the_key() {
        let mut c = VaeConfig::wan2_1();
        c.latents_std.pop();
        assert!(c.validate().unwrap_err().to_string().contains("latents_std"));
        let mut c = VaeConfig::wan2_1();
        c.temperal_downsample.push(true);
        assert!(c.validate().unwrap_err().to_string().contains("temperal_downsample"));
        let mut c = VaeConfig::wan2_1();
        c.is_residual = true;
        assert!(c.validate().unwrap_err().to_string().contains("is_residual"));
        let mut c = VaeConfig::wan2_1();
        c.attn_scales = vec![0.5];
        assert!(c.validate().unwrap_err().to_string().contains("attn_scales"));
    }
}
