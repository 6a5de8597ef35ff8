//! `AutoencoderKLWan` (diffusers autoencoder_kl_wan.py) on the runtime: `encode` (encode.rs) walks the
//! frames as `_encode` does (frame 0, then 4 at a time) and `decode_with` (decode.rs) the latent frames one at a time as
//! `_decode` does, each chunk one forward of the offload engine, with the causal feature caches kept
//! in the activation arena between chunks. The encoder half (`encoder.*`, `quant_conv`) and the
//! decoder half (`post_quant_conv`, `decoder.*`) are declared separately, each in its own precision
//! (default: encode fp32, decode bf16) and run by its own engine.
//!
//! Activations are channels-last and the model runs one sample of a batch at a time.

use wanrt_runtime::offload::{Engine, ModelUnits, VarBuilder};
use wanrt_runtime::{DType, Device, Error, Result, Tensor};

use super::chunks::{ChunkDownloads, HostChunk};
use super::coder::{WanDecoder3d, WanEncoder3d};
use super::config::VaeConfig;
use super::exec::StageFn;
use super::tiling::TilePlan;

/// Bounds on video sizes (far above Wan's 81 frames of 1280x720), so every size computed from them
/// fits in 64 bits.
pub const MAX_FRAMES: usize = 1 << 13;
pub const MAX_SIDE: usize = 1 << 14;

/// One half of the VAE: its modules, their units, and the dtype of its weights and activations.
pub struct Half<M> {
    pub module: M,
    pub units: ModelUnits,
    pub dtype: DType,
}

/// The Wan VAE: config, encoder half, decoder half.
pub struct AutoencoderKLWan {
    pub cfg: VaeConfig,
    pub encoder: Half<WanEncoder3d>,
    pub decoder: Half<WanDecoder3d>,
}

impl AutoencoderKLWan {
    /// Declares both halves (no device, no weights): `encode_dtype` for `encoder.*` and `quant_conv`,
    /// `decode_dtype` for `post_quant_conv` and `decoder.*`.
    pub fn new(cfg: &VaeConfig, encode_dtype: DType, decode_dtype: DType) -> Result<AutoencoderKLWan> {
        cfg.validate()?;
        let vb = VarBuilder::new(move |_| encode_dtype);
        let enc = WanEncoder3d::new(&vb, cfg);
        let encoder = Half { module: enc, units: vb.finish()?, dtype: encode_dtype };
        let vb = VarBuilder::new(move |_| decode_dtype);
        let dec = WanDecoder3d::new(&vb, cfg);
        let decoder = Half { module: dec, units: vb.finish()?, dtype: decode_dtype };
        Ok(AutoencoderKLWan { cfg: cfg.clone(), encoder, decoder })
    }

    /// Latent (T', h, w) of a (frames, height, width) video; frames must be 4k + 1 (the chunking
    /// covers exactly those) and height/width multiples of the spatial factor.
    pub fn latent_dims(&self, frames: usize, height: usize, width: usize) -> Result<(usize, usize, usize)> {
        let (st, ss) = (self.cfg.scale_factor_temporal, self.cfg.scale_factor_spatial);
        if frames == 0 || (frames - 1) % st != 0 {
            return Err(Error::invalid(format!("vae encode: {frames} frames; the VAE takes {st}k + 1 frames (1, {}, {}, ...)", st + 1, 2 * st + 1)));
        }
        if height == 0 || width == 0 || height % ss != 0 || width % ss != 0 {
            return Err(Error::invalid(format!("vae encode: {height}x{width} frames; height and width must be positive multiples of {ss}")));
        }
        if frames > MAX_FRAMES || height > MAX_SIDE || width > MAX_SIDE {
            return Err(Error::invalid(format!("vae encode: {frames} frames of {height}x{width}; at most {MAX_FRAMES} frames of {MAX_SIDE}x{MAX_SIDE}")));
        }
        Ok((1 + (frames - 1) / st, height / ss, width / ss))
    }

    /// Video (frames, H, W) of a latent (T, h, w).
    pub fn video_dims(&self, t: usize, h: usize, w: usize) -> Result<(usize, usize, usize)> {
        if t == 0 || h == 0 || w == 0 {
            return Err(Error::invalid(format!("vae decode: latent grid {t}x{h}x{w} has an empty axis")));
        }
        let (st, ss) = (self.cfg.scale_factor_temporal, self.cfg.scale_factor_spatial);
        let (f, hv, wv) = (1 + st * (t - 1), h * ss, w * ss);
        if f > MAX_FRAMES || hv > MAX_SIDE || wv > MAX_SIDE {
            return Err(Error::invalid(format!("vae decode: latent grid {t}x{h}x{w} decodes to {f} frames of {hv}x{wv}; at most {MAX_FRAMES} frames of {MAX_SIDE}x{MAX_SIDE}")));
        }
        Ok((f, hv, wv))
    }

    pub(crate) fn check_engine(engine: &Engine, units: &ModelUnits, what: &str) -> Result<()> {
        if engine.units().units() != units.units() {
            return Err(Error::invalid(format!("vae {what}: the offload engine was made for other weight units (another config or precision)")));
        }
        Ok(())
    }

    /// Decodes `latents` [B, z, T, h, w] (any float dtype, on the engine's device; un-normalized, i.e.
    /// what `mode()` or `sample()` gives) latent frame by latent frame, handing each chunk of output
    /// frames to `sink(sample, first_frame, frames)` as soon as it is ready: `frames` is
    /// [1, C_out, n, H, W] f32 clamped to [-1, 1] (n = 1 for the first latent frame, 4 after), valid
    /// until `sink` returns. The whole video never sits on the device.
    pub fn decode_with(
        &self,
        engine: &Engine,
        latents: &Tensor,
        sink: impl FnMut(usize, usize, &Tensor) -> Result<()>,
        capture: Option<&mut StageFn<'_>>,
    ) -> Result<()> {
        let (h, w) = match *latents.shape() {
            [_, _, _, h, w] => (h, w),
            _ => return Err(Error::Shape { op: "vae decode", name: "latents".into(), expected: "[B, z, T, h, w]".into(), got: latents.shape().to_vec() }),
        };
        self.decode_tiled_with(engine, latents, &TilePlan::untiled(h, w), sink, capture)
    }

    /// [`Self::decode_with`] collected on the host: ([B, C_out, F, H, W], f32 values).
    pub fn decode(&self, engine: &Engine, latents: &Tensor) -> Result<(Vec<usize>, Vec<f32>)> {
        let [_, _, _, h, w] = *latents.shape() else {
            return Err(Error::Shape { op: "vae decode", name: "latents".into(), expected: "[B, z, T, h, w]".into(), got: latents.shape().to_vec() });
        };
        self.decode_tiled(engine, latents, &TilePlan::untiled(h, w))
    }

    /// [`Self::decode_tiled_with`] collected on the host.
    pub fn decode_tiled(&self, engine: &Engine, latents: &Tensor, tiles: &TilePlan) -> Result<(Vec<usize>, Vec<f32>)> {
        let [b, _, t, h, w] = *latents.shape() else {
            return Err(Error::Shape { op: "vae decode", name: "latents".into(), expected: "[B, z, T, h, w]".into(), got: latents.shape().to_vec() });
        };
        let (f, hv, wv) = self.video_dims(t, h, w)?;
        let co = self.cfg.out_channels;
        let shape = vec![b, co, f, hv, wv];
        let mut out = vec![0f32; shape.iter().product()];
        let hw = hv * wv;
        let mut place = |ready: Option<HostChunk<(usize, usize)>>| {
            if let Some((v, n, (s, f0))) = ready {
                for c in 0..co {
                    let dst = ((s * co + c) * f + f0) * hw;
                    out[dst..dst + n * hw].copy_from_slice(&v[c * n * hw..(c + 1) * n * hw]);
                }
            }
        };
        let mut downloads = ChunkDownloads::new();
        self.decode_tiled_with(engine, latents, tiles, |s, f0, chunk| downloads.push(chunk, (s, f0)).map(&mut place), None)?;
        place(downloads.finish()?);
        Ok((shape, out))
    }
}

/// `DiagonalGaussianDistribution` (diffusers models/autoencoders/vae.py) over host moments
/// [B, 2z, ...]: `mode()` is the mean (the first z channels).
pub fn posterior_mode(moments: &[f32], shape: &[usize]) -> Result<(Vec<usize>, Vec<f32>)> {
    let (b, c2, rest) = split(moments, shape)?;
    let z = c2 / 2;
    let mut out = Vec::with_capacity(b * z * rest);
    for s in 0..b {
        out.extend_from_slice(&moments[s * c2 * rest..][..z * rest]);
    }
    let mut sh = shape.to_vec();
    sh[1] = z;
    Ok((sh, out))
}

/// `sample()` with the given standard-normal `noise` (shaped like the mode): mean + exp(logvar / 2)
/// · noise, logvar clamped to [-30, 20] as upstream; in f32 like the reference in fp32.
pub fn posterior_sample(moments: &[f32], shape: &[usize], noise: &[f32]) -> Result<(Vec<usize>, Vec<f32>)> {
    let (b, c2, rest) = split(moments, shape)?;
    let z = c2 / 2;
    if noise.len() != b * z * rest {
        return Err(Error::invalid(format!("vae sample: {} noise values for a mode of {} values", noise.len(), b * z * rest)));
    }
    let (sh, mut out) = posterior_mode(moments, shape)?;
    for s in 0..b {
        for i in 0..z * rest {
            let logvar = moments[(s * c2 + z) * rest + i].clamp(-30.0, 20.0);
            let std = (0.5 * logvar).exp();
            out[s * z * rest + i] += std * noise[s * z * rest + i];
        }
    }
    Ok((sh, out))
}

fn split(moments: &[f32], shape: &[usize]) -> Result<(usize, usize, usize)> {
    if shape.len() < 2 || shape[1] % 2 != 0 || shape.iter().product::<usize>() != moments.len() {
        return Err(Error::invalid(format!("vae posterior: moments of shape {shape:?} ({} values) need [B, 2z, ...]", moments.len())));
    }
    Ok((shape[0], shape[1], shape[2..].iter().product()))
}

/// The pipelines' latent normalization (diffusers pipeline_wan_i2v.py): `(μ − mean) · (1/std)` per
/// channel of [B, z, ...], in f32 with `1/std` rounded to f32 first, as torch computes it in fp32.
pub fn normalize_latents(cfg: &VaeConfig, latents: &mut [f32], shape: &[usize]) -> Result<()> {
    per_channel(cfg, latents, shape, |v, mean, inv_std| (v - mean) * inv_std)
}

/// The inverse the pipelines apply before decoding (pipeline_wan.py): `z / (1/std) + mean`.
pub fn denormalize_latents(cfg: &VaeConfig, latents: &mut [f32], shape: &[usize]) -> Result<()> {
    per_channel(cfg, latents, shape, |v, mean, inv_std| v / inv_std + mean)
}

fn per_channel(cfg: &VaeConfig, x: &mut [f32], shape: &[usize], f: impl Fn(f32, f32, f32) -> f32) -> Result<()> {
    if shape.len() < 2 || shape[1] != cfg.z_dim || shape.iter().product::<usize>() != x.len() {
        return Err(Error::invalid(format!("vae latents: shape {shape:?} ({} values) is not [B, {}, ...]", x.len(), cfg.z_dim)));
    }
    let rest: usize = shape[2..].iter().product();
    for (i, chunk) in x.chunks_mut(rest.max(1)).enumerate() {
        let c = i % cfg.z_dim;
        let mean = cfg.latents_mean[c] as f32;
        let inv_std = 1.0f32 / cfg.latents_std[c] as f32;
        chunk.iter_mut().for_each(|v| *v = f(*v, mean, inv_std));
    }
    Ok(())
}

/// Uploads host f32 values as a device tensor of `shape` in `dtype` (the CLI's and tests' inputs).
pub fn upload(dev: &std::sync::Arc<Device>, shape: &[usize], dtype: DType, values: &[f32]) -> Result<Tensor> {
    Tensor::from_f32(dev, shape, dtype, values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activation_bytes_for_the_fixture_and_wan_shapes() {
        let cfg = VaeConfig::wan2_1();
        let m = AutoencoderKLWan::new(&cfg, DType::F32, DType::BF16).unwrap();
        // Units declared: both halves, every key once.
        assert!(m.encoder.units.len() > 10 && m.decoder.units.len() > 10);
        let e = m.encode_activation_bytes(81, 480, 832).unwrap();
        let d = m.decode_activation_bytes(21, 60, 104).unwrap();
        // At least the full-resolution caches (down_blocks.0-1's 4 convs, 2 frames × 480 × 832 × 96
        // channels f32 each) and the frames part's pool (3 frames of that size, the frames going
        // one at a time).
        assert!(e > (4 * 2 + 3) * 480 * 832 * 96 * 4 && e < 6 << 30, "{e}");
        assert!(d > 0 && d < 6 << 30, "{d}");
        assert!(m.latent_dims(80, 480, 832).is_err());
        assert!(m.latent_dims(81, 481, 832).is_err());
        assert!(m.latent_dims(81, 1 << 20, 832).is_err() && m.video_dims(21, 1 << 20, 8).is_err());
        assert_eq!(m.latent_dims(81, 480, 832).unwrap(), (21, 60, 104));
        assert_eq!(m.video_dims(21, 60, 104).unwrap(), (81, 480, 832));
    }

    #[test]
    fn cache_slots_match_upstream_feat_idx_counts() {
        // diffusers `autoencoder_kl_wan.py` `AutoencoderKLWan.clear_cache` (`_enc_conv_num`,
        // `_conv_num`): the encoder consumes 24 cache slots per chunk, the decoder 32.
        let m = AutoencoderKLWan::new(&VaeConfig::wan2_1(), DType::F32, DType::F32).unwrap();
        assert_eq!(m.encode_walk(9, 64, 64).caches.len(), 24);
        assert_eq!(m.decode_walk(3, 8, 8).caches.len(), 32);
        // Frames per chunk: a later decode chunk gives 4 frames at 8x the latent size.
        let w = m.decode_walk(3, 8, 8);
        assert_eq!((w.t, w.h, w.w, w.c), (4, 64, 64, 3));
        let w = m.decode_walk(1, 8, 8);
        assert_eq!((w.t, w.h, w.w, w.c), (1, 64, 64, 3));
        let w = m.encode_walk(9, 64, 64);
        assert_eq!((w.t, w.h, w.w, w.c), (1, 8, 8, 32));
        assert_eq!(w.attn, Some((64, 384)));
    }

    #[test]
    fn posterior_and_normalization() {
        let cfg = VaeConfig::wan2_1();
        // B = 1, 2z = 32, one value each: mean = c, logvar = 40 (clamped to 20).
        let moments: Vec<f32> = (0..32).map(|c| if c < 16 { c as f32 } else { 40.0 }).collect();
        let (sh, mode) = posterior_mode(&moments, &[1, 32, 1]).unwrap();
        assert_eq!(sh, [1, 16, 1]);
        assert_eq!(mode, (0..16).map(|c| c as f32).collect::<Vec<_>>());
        let (_, s) = posterior_sample(&moments, &[1, 32, 1], &[1.0; 16]).unwrap();
        assert!((s[0] - 10f32.exp()).abs() < 1e-2);
        let mut z = mode.clone();
        normalize_latents(&cfg, &mut z, &sh).unwrap();
        assert!((z[0] - (0.0 + 0.7571) / 2.8184).abs() < 1e-6);
        denormalize_latents(&cfg, &mut z, &sh).unwrap();
        assert!(z.iter().zip(&mode).all(|(a, b)| (a - b).abs() < 1e-5));
        assert!(normalize_latents(&cfg, &mut z, &[1, 15, 1]).is_err());
    }
}
