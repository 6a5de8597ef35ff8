//! The image-to-video conditioning of diffusers' `WanImageToVideoPipeline` (pipeline_wan_i2v.py),
//! Wan2.1 path (`expand_timesteps=False`, no last image), on the host:
//! - the size recipe of the diffusers Wan I2V example (height and width from the image's aspect within
//!   a maximum area, multiples of 16);
//! - `video_processor.preprocess`: PIL LANCZOS resize to (W, H), /255, 2x − 1;
//! - `prepare_latents`' video condition (the image, then zero frames) and its frame mask, folded to 4
//!   channels per latent frame.

use image::RgbImage;
use wanrt_runtime::{Error, Result};

use crate::clip::preprocess::{resample_rgb8, Resample};

/// Latent channels of the mask (`vae_scale_factor_temporal`: one per packed frame).
pub const MASK_CHANNELS: usize = 4;

/// The diffusers example's size recipe: `aspect = image.height / image.width`, `height =
/// round(sqrt(max_area · aspect)) // 16 · 16`, `width = round(sqrt(max_area / aspect)) // 16 · 16`
/// (numpy's round: half to even), at least 16 each.
pub fn fit_size(image_width: u32, image_height: u32, max_area: usize) -> Result<(usize, usize)> {
    if image_width == 0 || image_height == 0 {
        return Err(Error::invalid(format!("the image is {image_width}x{image_height}")));
    }
    const MOD: usize = 16; // vae_scale_factor_spatial (8) × patch_size[1] (2)
    let aspect = image_height as f64 / image_width as f64;
    let side = |x: f64| ((x.sqrt().round_ties_even() as usize) / MOD * MOD).max(MOD);
    Ok((side(max_area as f64 * aspect), side(max_area as f64 / aspect)))
}

/// `VideoProcessor.preprocess(image, height, width)` for an RGB image: PIL `resize((width, height),
/// LANCZOS)` (a copy when the size already matches), `/ 255` in f32, then `2x − 1`: (1, 3, H, W) f32.
pub fn image_condition(rgb: &RgbImage, height: usize, width: usize) -> Result<Vec<f32>> {
    let resized = resample_rgb8(rgb, width as u32, height as u32, Resample::Lanczos)?;
    let plane = height * width;
    let mut out = vec![0f32; 3 * plane];
    for (p, px) in resized.pixels().enumerate() {
        for c in 0..3 {
            out[c * plane + p] = 2.0 * (px.0[c] as f32 / 255.0) - 1.0;
        }
    }
    Ok(out)
}

/// `prepare_latents`' `video_condition`: the (1, 3, H, W) image at frame 0, then `frames − 1` zero
/// frames: (1, 3, frames, H, W).
pub fn condition_video(image: &[f32], frames: usize, height: usize, width: usize) -> Result<Vec<f32>> {
    let plane = height * width;
    if image.len() != 3 * plane || frames == 0 {
        return Err(Error::invalid(format!("condition video: an image of {} values is not 3x{height}x{width}, or {frames} frames", image.len())));
    }
    let mut out = vec![0f32; 3 * frames * plane];
    for c in 0..3 {
        out[c * frames * plane..][..plane].copy_from_slice(&image[c * plane..][..plane]);
    }
    Ok(out)
}

/// `prepare_latents`' mask, step by step as upstream builds it: ones (B, 1, frames, h, w) with frames
/// 1.. zeroed; frame 0 repeated `temporal` times in front of frames 1..; viewed as (B, T, temporal, h,
/// w) and transposed to (B, temporal, T, h, w). Returns that shape and the values.
pub fn frame_mask(batch: usize, frames: usize, lh: usize, lw: usize, temporal: usize) -> Result<([usize; 5], Vec<f32>)> {
    if frames == 0 || temporal == 0 || (frames - 1) % temporal != 0 {
        return Err(Error::invalid(format!("I2V mask: {frames} frames are not {temporal}k + 1")));
    }
    let t_lat = (frames - 1) / temporal + 1;
    let plane = lh * lw;
    // (B, 1, frames, h, w): 1 at frame 0.
    let mask = |f: usize| if f == 0 { 1.0f32 } else { 0.0 };
    // torch.concat([repeat_interleave(first, temporal), mask[:, :, 1:]], dim=2): frame j of the result.
    let stretched = |j: usize| if j < temporal { mask(0) } else { mask(j - temporal + 1) };
    let shape = [batch, temporal, t_lat, lh, lw];
    let mut out = vec![0f32; batch * temporal * t_lat * plane];
    for b in 0..batch {
        for c in 0..temporal {
            for t in 0..t_lat {
                // view(B, T, temporal, h, w)[b, t, c] is stretched frame t·temporal + c; transpose(1, 2).
                let v = stretched(t * temporal + c);
                out[((b * temporal + c) * t_lat + t) * plane..][..plane].fill(v);
            }
        }
    }
    Ok((shape, out))
}

/// The transformer's condition channels: `concat([mask (4), latents (16)], dim=1)` of one sample,
/// (1, 20, T, h, w) from the mask and the normalized condition latents (1, 16, T, h, w).
pub fn condition(mask: &[f32], latents: &[f32], t_lat: usize, lh: usize, lw: usize) -> Result<Vec<f32>> {
    let per = t_lat * lh * lw;
    if mask.len() != MASK_CHANNELS * per || latents.len() % per != 0 {
        return Err(Error::invalid(format!("I2V condition: a mask of {} and latents of {} values for a {t_lat}x{lh}x{lw} grid", mask.len(), latents.len())));
    }
    let mut out = Vec::with_capacity(mask.len() + latents.len());
    out.extend_from_slice(mask);
    out.extend_from_slice(latents);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_is_one_at_the_first_latent_frame_only() {
        let (shape, m) = frame_mask(2, 81, 3, 5, 4).unwrap();
        assert_eq!(shape, [2, 4, 21, 3, 5]);
        for (i, v) in m.iter().enumerate() {
            let t = i / 15 % 21;
            assert_eq!(*v, if t == 0 { 1.0 } else { 0.0 }, "index {i}");
        }
        assert!(frame_mask(1, 80, 1, 1, 4).is_err());
        assert_eq!(frame_mask(1, 1, 1, 1, 4).unwrap().1, [1.0; 4]);
    }

    #[test]
    fn example_size_recipe() {
        // A 832x480 image at 480P's area keeps its size; 720P from a 16:9 image gives 720x1280.
        assert_eq!(fit_size(832, 480, 480 * 832).unwrap(), (480, 832));
        assert_eq!(fit_size(1920, 1080, 720 * 1280).unwrap(), (720, 1280));
        // A portrait image swaps the sides.
        assert_eq!(fit_size(480, 832, 480 * 832).unwrap(), (832, 480));
        // round(sqrt(399360 · 1)) = 632 → 624.
        assert_eq!(fit_size(100, 100, 480 * 832).unwrap(), (624, 624));
        assert!(fit_size(0, 10, 100).is_err());
    }

    #[test]
    fn condition_video_puts_the_image_first() {
        let img: Vec<f32> = (0..3 * 4).map(|i| i as f32).collect();
        let v = condition_video(&img, 5, 2, 2).unwrap();
        assert_eq!(&v[0..4], &[0.0, 1.0, 2.0, 3.0]);
        assert!(v[4..20].iter().all(|&x| x == 0.0));
        assert_eq!(&v[20..24], &[4.0, 5.0, 6.0, 7.0]);
        assert!(condition_video(&img, 5, 3, 2).is_err());
    }
}
