//! `wan vae encode` / `wan vae decode`: the Wan VAE between safetensors files in diffusers' layouts.
//!
//! - encode: `--video FILE` holds `video` [B, 3, F, H, W] (any float dtype, values in [-1, 1],
//!   F = 4k + 1, H and W multiples of 8); writes `latents` [B, 16, 1 + (F−1)/4, H/8, W/8] f32, the
//!   posterior mode (`vae.encode(video).latent_dist.mode()`, not normalized: the pipelines then apply
//!   `(latents − latents_mean) / latents_std`).
//! - decode: `--latents FILE` holds `latents` [B, 16, T, h, w] (un-normalized, what `vae.decode`
//!   takes); writes `video` [B, 3, 1 + 4(T−1), 8h, 8w] f32 clamped to [-1, 1].
//!
//! Every input (folder, config, weights, input file, key, shape, output path) is checked before the
//! device opens.

use std::path::Path;
use std::time::Instant;

use wanrt::models::vae::{posterior_mode, VaeFolder};
use wanrt::models::wan::Precision;
use wanrt::runtime::offload::{fmt_bytes, Budget};
use wanrt::runtime::tensor::bytes_to_f32;
use wanrt::runtime::weights::{write_safetensors, StorageDType, WeightStore};
use wanrt::{DType, Error, Result, Tensor};

/// Reads tensor `key` of a safetensors file as f32, with its shape.
fn read_input(path: &Path, key: &str) -> Result<(Vec<usize>, Vec<f32>)> {
    if !path.is_file() {
        return Err(Error::File { path: path.to_path_buf(), msg: "not a file (expected a .safetensors input)".into() });
    }
    let store = WeightStore::open(path)?;
    if !store.contains(key) {
        let names: Vec<_> = store.names().take(5).collect();
        return Err(Error::Tensor { path: path.to_path_buf(), tensor: key.into(), msg: format!("not in the file (it holds {names:?}{})", if store.len() > 5 { ", ..." } else { "" }) });
    }
    let info = store.info(key)?;
    let shape = info.shape.to_vec();
    if !info.dtype.is_float() {
        return Err(Error::Tensor { path: path.to_path_buf(), tensor: key.into(), msg: format!("stored as {}, expected a float dtype", info.dtype) });
    }
    let values = bytes_to_f32(&store.load(key, &shape, DType::F32)?, DType::F32);
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(Error::Tensor { path: path.to_path_buf(), tensor: key.into(), msg: format!("element {i} is {} (not finite)", values[i]) });
    }
    Ok((shape, values))
}

fn shape_error(path: &Path, key: &str, shape: &[usize], want: String) -> Error {
    Error::Tensor { path: path.to_path_buf(), tensor: key.into(), msg: format!("has shape {shape:?}, expected {want}") }
}

fn write_f32(out: &Path, key: &str, shape: &[usize], values: &[f32], producer: &str) -> Result<()> {
    let bytes: &[u8] = bytemuck::cast_slice(values);
    write_safetensors(out, &[(key, StorageDType::from(DType::F32), shape, bytes)], &[("producer", producer)])
}

/// cuBLASLt's workspace on the compute stream (runtime/gpu/blas.rs), allocated with the first GEMM.
pub(super) const GEMM_WORKSPACE: u64 = 32 << 20;

/// Device allocations are charged in multiples of 256 bytes.
pub(super) fn round(bytes: u64) -> u64 {
    bytes.div_ceil(256) * 256
}

/// Checks what a run needs (weights resident, activation arena, cuBLASLt's workspace, input and
/// output on the device) against `--vram`: a size is checked before the device opens, `auto` against
/// the device's free memory less the usual margin; the budget then caps the device's pool.
pub(super) fn fit(vram: Budget, need: u64, what: &str) -> Result<std::sync::Arc<wanrt::Device>> {
    let refuse = |budget: u64| Error::invalid(format!("vae {what} needs {} of device memory (weights, activations, cuBLASLt workspace, input and output); the budget is {}", fmt_bytes(need), fmt_bytes(budget)));
    if let Budget::Bytes(b) = vram {
        if need > b {
            return Err(refuse(b));
        }
    }
    let dev = super::gpu()?;
    let budget = vram.resolve(dev.mem_info()?.0)?;
    if need > budget {
        return Err(refuse(budget));
    }
    dev.set_budget(Some(dev.memory_stats().in_use.saturating_add(budget)));
    Ok(dev)
}

/// `wan vae encode`: untiled when it fits `vram`, else in the exact spatial tiles the budget allows
/// (`--tile` forces a size).
pub fn encode(root: &Path, video: &Path, out: &Path, precision: Option<Precision>, vram: Budget, tile: Option<usize>) -> Result<()> {
    super::check_output_path(out)?;
    let dt = precision.unwrap_or(Precision::Fp32).compute();
    let folder = VaeFolder::open(root, dt, dt)?;
    let m = &folder.model;
    let (shape, values) = read_input(video, "video")?;
    let &[b, c, f, h, w] = shape.as_slice() else {
        return Err(shape_error(video, "video", &shape, format!("[B, {}, F, H, W]", m.cfg.in_channels)));
    };
    if b == 0 || c != m.cfg.in_channels {
        return Err(shape_error(video, "video", &shape, format!("[B ≥ 1, {}, F, H, W]", m.cfg.in_channels)));
    }
    let (tl, hl, wl) = m.latent_dims(f, h, w).map_err(|e| shape_error(video, "video", &shape, e.to_string()))?;
    // Weights resident, cuBLASLt's workspace, the f32 input and the f32 moments on the device.
    let io = round(4 * values.len() as u64) + round(4 * (b * 2 * m.cfg.z_dim * tl * hl * wl) as u64);
    let overhead = m.encoder.units.total_bytes() + GEMM_WORKSPACE + io;
    let budget = match vram {
        Budget::Bytes(b) => b,
        Budget::Auto => vram.resolve(super::gpu()?.mem_info()?.0)?,
    };
    let tiles = m.plan_encode_tiles(f, h, w, Some(budget), overhead, tile)?;
    let need = overhead + m.encode_tiled_bytes(f, h, w, &tiles)?;
    let dev = fit(vram, need, "encode")?;
    eprintln!("vae encode: {} ({} of activations)", tiles.describe(m.cfg.scale_factor_spatial), fmt_bytes(need - overhead));
    let t0 = Instant::now();
    let engine = folder.engine(&dev, &m.encoder.units)?;
    let x = Tensor::from_f32(&dev, &shape, DType::F32, &values)?;
    let moments = m.encode_tiled(&engine, &x, &tiles, None)?;
    let (zs, mode) = posterior_mode(&moments.to_f32_vec()?, moments.shape())?;
    write_f32(out, "latents", &zs, &mode, "wanrt vae encode")?;
    eprintln!("encoded {shape:?} to {zs:?} in {:.2} s, peak VRAM {}, wrote {}", t0.elapsed().as_secs_f64(), fmt_bytes(dev.memory_stats().peak), out.display());
    Ok(())
}

/// `wan vae decode`: untiled when it fits `vram`, else in the exact spatial tiles the budget allows
/// (`--tile` forces a size).
pub fn decode(root: &Path, latents: &Path, out: &Path, precision: Option<Precision>, vram: Budget, tile: Option<usize>) -> Result<()> {
    super::check_output_path(out)?;
    let dt = precision.unwrap_or(Precision::Bf16).compute();
    let folder = VaeFolder::open(root, dt, dt)?;
    let m = &folder.model;
    let (shape, values) = read_input(latents, "latents")?;
    let &[b, z, t, h, w] = shape.as_slice() else {
        return Err(shape_error(latents, "latents", &shape, format!("[B, {}, T, h, w]", m.cfg.z_dim)));
    };
    if b == 0 || z != m.cfg.z_dim {
        return Err(shape_error(latents, "latents", &shape, format!("[B ≥ 1, {}, T, h, w]", m.cfg.z_dim)));
    }
    m.video_dims(t, h, w).map_err(|e| shape_error(latents, "latents", &shape, e.to_string()))?;
    // Weights resident, cuBLASLt's workspace and the f32 input on the device; the output goes to the host.
    let overhead = m.decoder.units.total_bytes() + GEMM_WORKSPACE + round(4 * values.len() as u64);
    let budget = match vram {
        Budget::Bytes(b) => b,
        Budget::Auto => vram.resolve(super::gpu()?.mem_info()?.0)?,
    };
    let tiles = m.plan_decode_tiles(t, h, w, Some(budget), overhead, tile)?;
    let need = overhead + m.decode_tiled_bytes(t, h, w, &tiles)?;
    let dev = fit(vram, need, "decode")?;
    eprintln!("vae decode: {} ({} of activations)", tiles.describe(m.cfg.scale_factor_spatial), fmt_bytes(need - overhead));
    let t0 = Instant::now();
    let engine = folder.engine(&dev, &m.decoder.units)?;
    let zt = Tensor::from_f32(&dev, &shape, DType::F32, &values)?;
    let (vs, video) = m.decode_tiled(&engine, &zt, &tiles)?;
    write_f32(out, "video", &vs, &video, "wanrt vae decode")?;
    eprintln!("decoded {shape:?} to {vs:?} in {:.2} s, peak VRAM {}, wrote {}", t0.elapsed().as_secs_f64(), fmt_bytes(dev.memory_stats().peak), out.display());
    Ok(())
}
