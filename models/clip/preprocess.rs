//! `CLIPImageProcessor` (transformers 5.17, the PIL backend `CLIPImageProcessorPil`) reproduced on the
//! CPU: convert to RGB as PIL's `Image.convert("RGB")` does, resize the shortest edge with Pillow's
//! convolution resampler (bit-exact uint8 output), center crop, rescale and normalize to f32 CHW.
//!
//! Resampling is bit-exact with Pillow 13 for every filter but NEAREST, including its pass order
//! (`pillow_vertical_first`); older Pillow always ran the horizontal pass first, so results for tall
//! downscales differ by a rounding step from Pillow < 13.
//!
//! Upstream: transformers `image_processing_backends.py` (`PilBackend`), `image_transforms.py`
//! (`get_resize_output_image_size`, `resize`, `center_crop`, `rescale`, `normalize`, `convert_to_rgb`)
//! and Pillow `src/libImaging/Resample.c` (`precompute_coeffs`, `ImagingResample{Horizontal,Vertical}_8bpc`,
//! `ImagingResampleInner`).

use std::io::Cursor;
use std::path::Path;

/// The `image` crate this module takes and returns, re-exported so callers use the matching version.
pub use image;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits, RgbImage};
use serde::Deserialize;
use wanrt_runtime::{Error, Result};

/// Largest accepted image side in pixels (either dimension), checked from the header before any pixel
/// buffer is allocated.
pub const MAX_IMAGE_SIDE: u32 = 16384;
/// Largest accepted image area in pixels (64 Mpx), also checked from the header.
pub const MAX_IMAGE_PIXELS: u64 = 1 << 26;
/// Largest accepted image file.
pub const MAX_FILE_BYTES: u64 = 256 << 20;
/// Cap on what the decoder may allocate (`image::Limits::max_alloc`): 64 Mpx of 16-bit RGBA.
pub const MAX_DECODE_ALLOC: u64 = MAX_IMAGE_PIXELS * 8;

/// OpenAI CLIP normalization constants (transformers `OPENAI_CLIP_MEAN` / `OPENAI_CLIP_STD`), the
/// processor's defaults.
pub const OPENAI_CLIP_MEAN: [f64; 3] = [0.48145466, 0.4578275, 0.40821073];
pub const OPENAI_CLIP_STD: [f64; 3] = [0.26862954, 0.26130258, 0.27577711];

/// Pillow's convolution filters (`PIL.Image.Resampling` values as stored in `resample`). NEAREST (0)
/// goes through another Pillow code path, and Pillow 13's MKS2013/MKS2021 are not implemented.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resample {
    Lanczos,
    Bilinear,
    Bicubic,
    Box,
    Hamming,
}

impl Resample {
    /// From PIL's integer code (`resample` in preprocessor_config.json).
    pub fn from_pil(code: i64) -> Result<Self> {
        Ok(match code {
            1 => Resample::Lanczos,
            2 => Resample::Bilinear,
            3 => Resample::Bicubic,
            4 => Resample::Box,
            5 => Resample::Hamming,
            0 => return Err(Error::invalid("resample 0 (NEAREST) is not supported; use 1-5")),
            other => return Err(Error::invalid(format!("resample {other} is not supported (1-5: LANCZOS, BILINEAR, BICUBIC, BOX, HAMMING)"))),
        })
    }

    fn support(self) -> f64 {
        match self {
            Resample::Box => 0.5,
            Resample::Bilinear | Resample::Hamming => 1.0,
            Resample::Bicubic => 2.0,
            Resample::Lanczos => 3.0,
        }
    }

    /// The filter functions of Resample.c, with its constants and branch order.
    fn eval(self, x: f64) -> f64 {
        fn sinc(x: f64) -> f64 {
            if x == 0.0 {
                return 1.0;
            }
            let x = x * std::f64::consts::PI;
            x.sin() / x
        }
        match self {
            Resample::Box => {
                if x > -0.5 && x <= 0.5 {
                    1.0
                } else {
                    0.0
                }
            }
            Resample::Bilinear => {
                let x = x.abs();
                if x < 1.0 {
                    1.0 - x
                } else {
                    0.0
                }
            }
            Resample::Hamming => {
                let x = x.abs();
                if x == 0.0 {
                    return 1.0;
                }
                if x >= 1.0 {
                    return 0.0;
                }
                let x = x * std::f64::consts::PI;
                // `0.54f + 0.46f * cos(x)`: float literals promoted to double.
                x.sin() / x * (0.54f32 as f64 + 0.46f32 as f64 * x.cos())
            }
            Resample::Bicubic => {
                const A: f64 = -0.5;
                let x = x.abs();
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
            Resample::Lanczos => {
                if (-3.0..3.0).contains(&x) {
                    sinc(x) * sinc(x / 3.0)
                } else {
                    0.0
                }
            }
        }
    }
}

// --- config ---------------------------------------------------------------------------------------

/// `size` / `crop_size` as transformers stores them: a dict or (legacy) a bare int.
#[derive(Deserialize, Debug, Clone)]
#[serde(untagged)]
enum SizeSpec {
    Int(u32),
    Dict {
        shortest_edge: Option<u32>,
        longest_edge: Option<u32>,
        height: Option<u32>,
        width: Option<u32>,
    },
}

#[derive(Deserialize, Debug)]
struct RawConfig {
    do_resize: Option<bool>,
    size: Option<SizeSpec>,
    resample: Option<i64>,
    do_center_crop: Option<bool>,
    crop_size: Option<SizeSpec>,
    do_rescale: Option<bool>,
    rescale_factor: Option<f64>,
    do_normalize: Option<bool>,
    image_mean: Option<Vec<f64>>,
    image_std: Option<Vec<f64>>,
    do_convert_rgb: Option<bool>,
}

/// How the resize step sizes its output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResizeTo {
    /// `{"shortest_edge": n}`: the shorter side becomes n, the longer one `int(n * long / short)`.
    ShortestEdge(u32),
    /// `{"height": h, "width": w}`: exactly h × w.
    Exact { height: u32, width: u32 },
}

/// The processor's settings, with `CLIPImageProcessor`'s defaults for keys the JSON omits.
#[derive(Clone, Debug, PartialEq)]
pub struct ClipImageProcessor {
    pub do_resize: bool,
    pub size: ResizeTo,
    pub resample: Resample,
    pub do_center_crop: bool,
    /// (height, width)
    pub crop_size: (u32, u32),
    pub do_rescale: bool,
    pub rescale_factor: f64,
    pub do_normalize: bool,
    pub image_mean: [f64; 3],
    pub image_std: [f64; 3],
    pub do_convert_rgb: bool,
}

impl Default for ClipImageProcessor {
    /// transformers' `CLIPImageProcessor()` defaults, which are also the Wan I2V repos' config.
    fn default() -> Self {
        ClipImageProcessor {
            do_resize: true,
            size: ResizeTo::ShortestEdge(224),
            resample: Resample::Bicubic,
            do_center_crop: true,
            crop_size: (224, 224),
            do_rescale: true,
            rescale_factor: 1.0 / 255.0,
            do_normalize: true,
            image_mean: OPENAI_CLIP_MEAN,
            image_std: OPENAI_CLIP_STD,
            do_convert_rgb: true,
        }
    }
}

fn file_err(path: &Path, msg: impl Into<String>) -> Error {
    Error::File { path: path.to_path_buf(), msg: msg.into() }
}

impl ClipImageProcessor {
    /// A Diffusers model root (`image_processor/preprocessor_config.json`) or the `image_processor/`
    /// folder itself.
    pub fn from_folder(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref();
        let nested = root.join("image_processor").join("preprocessor_config.json");
        let direct = root.join("preprocessor_config.json");
        if nested.is_file() {
            Self::from_config_file(nested)
        } else if direct.is_file() {
            Self::from_config_file(direct)
        } else {
            Err(file_err(root, "no image_processor/preprocessor_config.json or preprocessor_config.json in this folder"))
        }
    }

    pub fn from_config_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::Io { path: path.to_path_buf(), source: e })?;
        Self::from_json_str(&text).map_err(|e| match e {
            Error::Invalid(msg) => file_err(path, msg),
            other => other,
        })
    }

    /// Parses preprocessor_config.json text; unknown keys (e.g. `image_processor_type`) are ignored.
    pub fn from_json_str(text: &str) -> Result<Self> {
        let raw: RawConfig =
            serde_json::from_str(text).map_err(|e| Error::invalid(format!("preprocessor config: {e}")))?;
        let d = Self::default();
        let size = match raw.size {
            None => d.size,
            // An int with default_to_square=False means the shortest edge (transformers get_size_dict).
            Some(SizeSpec::Int(n)) => ResizeTo::ShortestEdge(n),
            Some(SizeSpec::Dict { shortest_edge: Some(n), longest_edge: None, .. }) => ResizeTo::ShortestEdge(n),
            Some(SizeSpec::Dict { shortest_edge: None, longest_edge: None, height: Some(height), width: Some(width) }) => {
                ResizeTo::Exact { height, width }
            }
            Some(other) => {
                return Err(Error::invalid(format!(
                    "size {other:?} is not supported (want {{\"shortest_edge\": n}} or {{\"height\", \"width\"}})"
                )))
            }
        };
        let crop_size = match raw.crop_size {
            None => d.crop_size,
            Some(SizeSpec::Int(n)) => (n, n),
            Some(SizeSpec::Dict { height: Some(h), width: Some(w), shortest_edge: None, longest_edge: None }) => (h, w),
            Some(other) => {
                return Err(Error::invalid(format!("crop_size {other:?} is not supported (want {{\"height\", \"width\"}})")))
            }
        };
        let three = |name: &str, v: Option<Vec<f64>>, default: [f64; 3]| -> Result<[f64; 3]> {
            match v {
                None => Ok(default),
                Some(v) => <[f64; 3]>::try_from(v.as_slice())
                    .map_err(|_| Error::invalid(format!("{name} has {} values, expected 3 (RGB)", v.len()))),
            }
        };
        let p = ClipImageProcessor {
            do_resize: raw.do_resize.unwrap_or(d.do_resize),
            size,
            resample: match raw.resample {
                None => d.resample,
                Some(code) => Resample::from_pil(code)?,
            },
            do_center_crop: raw.do_center_crop.unwrap_or(d.do_center_crop),
            crop_size,
            do_rescale: raw.do_rescale.unwrap_or(d.do_rescale),
            rescale_factor: raw.rescale_factor.unwrap_or(d.rescale_factor),
            do_normalize: raw.do_normalize.unwrap_or(d.do_normalize),
            image_mean: three("image_mean", raw.image_mean, d.image_mean)?,
            image_std: three("image_std", raw.image_std, d.image_std)?,
            do_convert_rgb: raw.do_convert_rgb.unwrap_or(d.do_convert_rgb),
        };
        p.validate()?;
        Ok(p)
    }

    fn validate(&self) -> Result<()> {
        let side_ok = |n: u32| (1..=MAX_IMAGE_SIDE).contains(&n);
        let ok = match self.size {
            ResizeTo::ShortestEdge(n) => side_ok(n),
            ResizeTo::Exact { height, width } => side_ok(height) && side_ok(width),
        };
        if !ok {
            return Err(Error::invalid(format!("size {:?} must be within 1..={MAX_IMAGE_SIDE}", self.size)));
        }
        if !side_ok(self.crop_size.0) || !side_ok(self.crop_size.1) {
            return Err(Error::invalid(format!("crop_size {:?} must be within 1..={MAX_IMAGE_SIDE}", self.crop_size)));
        }
        if !self.rescale_factor.is_finite() {
            return Err(Error::invalid("rescale_factor must be finite"));
        }
        if self.image_std.iter().any(|&s| s == 0.0 || !s.is_finite()) || self.image_mean.iter().any(|m| !m.is_finite()) {
            return Err(Error::invalid(format!(
                "image_mean {:?} / image_std {:?} must be finite with a nonzero std",
                self.image_mean, self.image_std
            )));
        }
        Ok(())
    }

    /// The resize step's output (height, width) for an input of (height, width), as transformers
    /// `get_resize_output_image_size(..., default_to_square=False)` computes it: the long side is
    /// `int(size * long / short)` with Python's float division, i.e. a correctly rounded f64 quotient
    /// truncated toward zero. Ties (a square image) count the width as the short side.
    pub fn resize_output_size(&self, height: u32, width: u32) -> (u32, u32) {
        match self.size {
            ResizeTo::Exact { height, width } => (height, width),
            ResizeTo::ShortestEdge(size) => {
                let (short, long) = if width <= height { (width, height) } else { (height, width) };
                let new_long = ((size as u64 * long as u64) as f64 / short as f64) as u32;
                if width <= height {
                    (new_long, size)
                } else {
                    (size, new_long)
                }
            }
        }
    }

    /// (3, H, W) of one preprocessed image of (height, width).
    pub fn output_shape(&self, height: u32, width: u32) -> [usize; 3] {
        let (h, w) = if self.do_center_crop {
            self.crop_size
        } else if self.do_resize {
            self.resize_output_size(height, width)
        } else {
            (height, width)
        };
        [3, h as usize, w as usize]
    }

    /// The resize step alone on an RGB image (the full uint8 output, like transformers' `resize`). A
    /// no-op when the size already matches (Pillow's `Image.resize` returns a copy).
    pub fn resize(&self, rgb: &RgbImage) -> Result<RgbImage> {
        let (h, w) = self.resize_output_size(rgb.height(), rgb.width());
        check_output_area(h, w)?;
        resample_rgb8(rgb, w, h, self.resample)
    }

    /// transformers `center_crop` on an RGB image: top = (h - crop_h) // 2 (floor), left likewise;
    /// where the image is smaller than the crop, the outside is zero padding.
    pub fn center_crop(&self, rgb: &RgbImage) -> RgbImage {
        let (ch, cw) = self.crop_size;
        let top = (rgb.height() as i64 - ch as i64).div_euclid(2);
        let left = (rgb.width() as i64 - cw as i64).div_euclid(2);
        let mut out = RgbImage::new(cw, ch);
        for y in 0..ch {
            let sy = y as i64 + top;
            if sy < 0 || sy >= rgb.height() as i64 {
                continue;
            }
            for x in 0..cw {
                let sx = x as i64 + left;
                if sx >= 0 && sx < rgb.width() as i64 {
                    out.put_pixel(x, y, *rgb.get_pixel(sx as u32, sy as u32));
                }
            }
        }
        out
    }

    /// One image to f32 CHW (3, H, W), H × W = `output_shape`. Only the part of the resized image the
    /// crop keeps is computed (each resized pixel depends only on its own filter taps, so the values
    /// equal those of a full resize followed by the crop).
    pub fn preprocess(&self, image: &DynamicImage) -> Result<Vec<f32>> {
        if image.width() == 0 || image.height() == 0 {
            return Err(Error::invalid(format!("image is {}x{}: nothing to preprocess", image.width(), image.height())));
        }
        let rgb = if self.do_convert_rgb {
            to_rgb8_like_pil(image)?
        } else {
            match image {
                DynamicImage::ImageRgb8(rgb) => rgb.clone(),
                other => {
                    return Err(Error::invalid(format!(
                        "do_convert_rgb is false but the image is {:?}, not 8-bit RGB",
                        other.color()
                    )))
                }
            }
        };
        let (rh, rw) = if self.do_resize { self.resize_output_size(rgb.height(), rgb.width()) } else { (rgb.height(), rgb.width()) };
        if !self.do_center_crop {
            check_output_area(rh, rw)?;
        }
        // The window of the resized image that survives the crop (rows/cols outside it are padding).
        let (oh, ow, top, left) = if self.do_center_crop {
            let (ch, cw) = self.crop_size;
            (ch, cw, (rh as i64 - ch as i64).div_euclid(2), (rw as i64 - cw as i64).div_euclid(2))
        } else {
            (rh, rw, 0, 0)
        };
        let y0 = top.clamp(0, rh as i64) as u32;
        let y1 = (top + oh as i64).clamp(0, rh as i64) as u32;
        let x0 = left.clamp(0, rw as i64) as u32;
        let x1 = (left + ow as i64).clamp(0, rw as i64) as u32;
        let window = if self.do_resize {
            resample_window(&rgb, rw, rh, x0..x1, y0..y1, self.resample)?
        } else {
            image::imageops::crop_imm(&rgb, x0, y0, x1 - x0, y1 - y0).to_image()
        };

        // rescale: f32(u8 as f64 * factor); normalize: (x - f32(mean)) / f32(std) in f32 (numpy's
        // float32 arithmetic in transformers `rescale` / `normalize`).
        let (oh, ow) = (oh as usize, ow as usize);
        let mut out = vec![0f32; 3 * oh * ow];
        for c in 0..3 {
            let mean = self.image_mean[c] as f32;
            let std = self.image_std[c] as f32;
            let value = |u: u8| -> f32 {
                let v = if self.do_rescale { (u as f64 * self.rescale_factor) as f32 } else { u as f32 };
                if self.do_normalize {
                    (v - mean) / std
                } else {
                    v
                }
            };
            let pad = value(0);
            let plane = &mut out[c * oh * ow..(c + 1) * oh * ow];
            for y in 0..oh {
                let ry = y as i64 + top;
                for x in 0..ow {
                    let rx = x as i64 + left;
                    let inside = ry >= y0 as i64 && ry < y1 as i64 && rx >= x0 as i64 && rx < x1 as i64;
                    plane[y * ow + x] = if inside {
                        value(window.get_pixel((rx - x0 as i64) as u32, (ry - y0 as i64) as u32).0[c])
                    } else {
                        pad
                    };
                }
            }
        }
        Ok(out)
    }

    /// A batch to (B, 3, H, W) f32, returned with its shape. Every image must give the same (H, W)
    /// (always true with center crop).
    pub fn preprocess_batch(&self, images: &[DynamicImage]) -> Result<(Vec<f32>, [usize; 4])> {
        let mut out = Vec::new();
        let mut shape: Option<[usize; 3]> = None;
        for (i, img) in images.iter().enumerate() {
            let s = self.output_shape(img.height(), img.width());
            if let Some(first) = shape {
                if first != s {
                    return Err(Error::invalid(format!("batch image {i} preprocesses to {s:?}, image 0 to {first:?}")));
                }
            }
            shape = Some(s);
            out.extend(self.preprocess(img).map_err(|e| Error::invalid(format!("batch image {i}: {e}")))?);
        }
        let [c, h, w] = shape.unwrap_or(self.output_shape(0, 0));
        Ok((out, [images.len(), c, h, w]))
    }
}

fn check_output_area(h: u32, w: u32) -> Result<()> {
    if h as u64 * w as u64 > MAX_IMAGE_PIXELS || h > MAX_IMAGE_SIDE * 16 || w > MAX_IMAGE_SIDE * 16 {
        return Err(Error::invalid(format!(
            "resized image would be {w}x{h}, over the {MAX_IMAGE_PIXELS}-pixel limit (extreme aspect ratio?)"
        )));
    }
    Ok(())
}

// --- RGB conversion -------------------------------------------------------------------------------

/// The image as PIL's `Image.convert("RGB")` would give it for the mode PIL opens the same file in:
/// 8-bit gray (L) is replicated; alpha (LA, RGBA, palette transparency) is dropped, not composited;
/// palettes arrive expanded by the decoder. 16-bit files: PIL opens 16-bit RGB(A) and gray+alpha PNGs
/// as 8-bit RGB/RGBA keeping the high byte of each sample, but 16-bit grayscale as `I;16`, whose
/// conversion to RGB clamps each value to 255 (checked with Pillow 13.0). So `Luma16` clamps and the
/// other 16-bit layouts take the high byte. Float images have no PIL counterpart and are refused.
pub fn to_rgb8_like_pil(image: &DynamicImage) -> Result<RgbImage> {
    let (w, h) = (image.width(), image.height());
    let from_fn = |f: &dyn Fn(u32, u32) -> [u8; 3]| RgbImage::from_fn(w, h, |x, y| image::Rgb(f(x, y)));
    Ok(match image {
        DynamicImage::ImageRgb8(im) => im.clone(),
        DynamicImage::ImageRgba8(im) => from_fn(&|x, y| {
            let p = im.get_pixel(x, y).0;
            [p[0], p[1], p[2]]
        }),
        DynamicImage::ImageLuma8(im) => from_fn(&|x, y| [im.get_pixel(x, y).0[0]; 3]),
        DynamicImage::ImageLumaA8(im) => from_fn(&|x, y| [im.get_pixel(x, y).0[0]; 3]),
        DynamicImage::ImageLuma16(im) => from_fn(&|x, y| [im.get_pixel(x, y).0[0].min(255) as u8; 3]),
        DynamicImage::ImageLumaA16(im) => from_fn(&|x, y| [(im.get_pixel(x, y).0[0] >> 8) as u8; 3]),
        DynamicImage::ImageRgb16(im) => from_fn(&|x, y| im.get_pixel(x, y).0.map(|v| (v >> 8) as u8)),
        DynamicImage::ImageRgba16(im) => from_fn(&|x, y| {
            let p = im.get_pixel(x, y).0;
            [(p[0] >> 8) as u8, (p[1] >> 8) as u8, (p[2] >> 8) as u8]
        }),
        other => {
            return Err(Error::invalid(format!(
                "{:?} images are not supported (no PIL mode converts like it); use 8- or 16-bit integer pixels",
                other.color()
            )))
        }
    })
}

// --- Pillow's convolution resampler ---------------------------------------------------------------

/// `PRECISION_BITS` of Resample.c: fixed-point coefficients with 22 fractional bits, leaving 8 bits for
/// the value and 2 for overshoot of the negative-lobed filters.
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// One axis's filter taps for output positions `range` of an `out_size` resize of `in_size` samples:
/// per output position (first input index, tap count) and `ksize` fixed-point taps. The f64 steps are
/// those of `precompute_coeffs` in the same order (so the rounding matches), then
/// `normalize_coeffs_8bpc`.
struct Taps {
    ksize: usize,
    bounds: Vec<(usize, usize)>,
    coeffs: Vec<i32>,
}

fn precompute_taps(in_size: u32, out_size: u32, range: std::ops::Range<u32>, filter: Resample) -> Result<Taps> {
    // `(double)(in1 - in0) / outSize` with box (0, in_size) in float: exact for sizes below 2^24.
    let scale = in_size as f32 as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let n = range.len();
    let count = n.checked_mul(ksize).filter(|&c| c <= (1 << 28)).ok_or_else(|| {
        Error::invalid(format!("resampling {in_size} -> {out_size} needs too many filter taps ({n} x {ksize})"))
    })?;
    let mut bounds = Vec::with_capacity(n);
    let mut coeffs = vec![0i32; count];
    let mut k = vec![0f64; ksize];
    let ss = 1.0 / filterscale;
    for (i, xx) in range.enumerate() {
        let center = (xx as f64 + 0.5) * scale; // in0 = 0
        // `(int)(center -/+ support + 0.5)`: C truncation toward zero, then clamped.
        let xmin = ((center - support + 0.5) as i64).max(0);
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64);
        let taps = (xmax - xmin).max(0) as usize;
        let taps = taps.min(ksize);
        let mut ww = 0.0;
        for (x, kx) in k.iter_mut().enumerate().take(taps) {
            let w = filter.eval(((x as i64 + xmin) as f64 - center + 0.5) * ss);
            *kx = w;
            ww += w;
        }
        for (x, &kx) in k.iter().enumerate().take(taps) {
            let v = if ww != 0.0 { kx / ww } else { kx };
            // normalize_coeffs_8bpc: round half away from zero via (int)(±0.5 + v * 2^22).
            coeffs[i * ksize + x] = if v < 0.0 {
                (-0.5 + v * (1u32 << PRECISION_BITS) as f64) as i32
            } else {
                (0.5 + v * (1u32 << PRECISION_BITS) as f64) as i32
            };
        }
        bounds.push((xmin as usize, taps));
    }
    Ok(Taps { ksize, bounds, coeffs })
}

/// `clip8`: the accumulator (with its +2^21 rounding bias) shifted down and clamped to 0..=255.
#[inline]
fn clip8(acc: i64) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Pillow `Image.resize((out_w, out_h), filter)` of an RGB image, bit-exact: the full output.
pub fn resample_rgb8(src: &RgbImage, out_w: u32, out_h: u32, filter: Resample) -> Result<RgbImage> {
    if src.width() == out_w && src.height() == out_h {
        return Ok(src.clone()); // Image.resize returns self.copy() for an unchanged size
    }
    resample_window(src, out_w, out_h, 0..out_w, 0..out_h, filter)
}

/// Pillow 13's pass order (`ImagingResampleInner` after python-pillow/Pillow#9549, "If height is
/// scaled down significantly more than width, resize vertically first"): vertical first when the
/// height shrinks by more rows than twice the columns the width shrinks by. The order changes the
/// uint8 rounding between the passes, so it matters for bit-exactness. Inferred from Pillow 13.0.0's
/// output (the merged C source was not at hand): on 397 random size pairs and three 2-D grids of
/// sizes it picks the order that reproduces Pillow's bytes every time.
pub fn pillow_vertical_first(in_w: u32, in_h: u32, out_w: u32, out_h: u32) -> bool {
    let (iw, ih, ow, oh) = (in_w as i64, in_h as i64, out_w as i64, out_h as i64);
    oh < ih && ih - oh > 2 * (iw - ow)
}

/// One horizontal pass: rows `rows` of `src` (`src_w` pixels wide), taps relative to column `col0`.
fn horizontal_pass(src: &[u8], src_w: usize, rows: std::ops::Range<usize>, col0: usize, t: &Taps) -> Vec<u8> {
    let n = t.bounds.len();
    let mut out = vec![0u8; rows.len() * n * 3];
    for (oy, sy) in rows.enumerate() {
        let srow = &src[sy * src_w * 3..(sy + 1) * src_w * 3];
        let orow = &mut out[oy * n * 3..(oy + 1) * n * 3];
        for (i, &(xmin, taps)) in t.bounds.iter().enumerate() {
            let k = &t.coeffs[i * t.ksize..i * t.ksize + taps];
            let mut acc = [1i64 << (PRECISION_BITS - 1); 3];
            for (j, &kj) in k.iter().enumerate() {
                let p = &srow[(xmin - col0 + j) * 3..(xmin - col0 + j) * 3 + 3];
                for c in 0..3 {
                    acc[c] += p[c] as i64 * kj as i64;
                }
            }
            for c in 0..3 {
                orow[i * 3 + c] = clip8(acc[c]);
            }
        }
    }
    out
}

/// One vertical pass: columns `cols` of `src` (`src_w` pixels wide), taps relative to row `row0`.
fn vertical_pass(src: &[u8], src_w: usize, cols: std::ops::Range<usize>, row0: usize, t: &Taps) -> Vec<u8> {
    let nx = cols.len();
    let mut out = vec![0u8; t.bounds.len() * nx * 3];
    for (i, &(ymin, taps)) in t.bounds.iter().enumerate() {
        let k = &t.coeffs[i * t.ksize..i * t.ksize + taps];
        let orow = &mut out[i * nx * 3..(i + 1) * nx * 3];
        for (x, o) in orow.iter_mut().enumerate() {
            let mut acc = 1i64 << (PRECISION_BITS - 1);
            for (j, &kj) in k.iter().enumerate() {
                acc += src[((ymin - row0 + j) * src_w + cols.start) * 3 + x] as i64 * kj as i64;
            }
            *o = clip8(acc);
        }
    }
    out
}

/// The input span (first index, end) that a set of taps reads.
fn span(t: &Taps) -> (usize, usize) {
    let first = t.bounds.iter().map(|b| b.0).min().unwrap_or(0);
    let end = t.bounds.iter().map(|b| b.0 + b.1).max().unwrap_or(first);
    (first, end.max(first))
}

/// The columns `xs` and rows `ys` of Pillow's `(out_w, out_h)` resize of `src`, as a
/// `xs.len() × ys.len()` image: two separable passes in Pillow's order (`pillow_vertical_first`), each
/// rounding to uint8 as `ImagingResampleInner` does; a pass whose size is unchanged is skipped, as
/// there. Only the input rows/columns the window's taps reach are processed.
pub fn resample_window(
    src: &RgbImage,
    out_w: u32,
    out_h: u32,
    xs: std::ops::Range<u32>,
    ys: std::ops::Range<u32>,
    filter: Resample,
) -> Result<RgbImage> {
    let (in_w, in_h) = (src.width(), src.height());
    if in_w == 0 || in_h == 0 || out_w == 0 || out_h == 0 {
        return Err(Error::invalid(format!("cannot resample {in_w}x{in_h} to {out_w}x{out_h}")));
    }
    if xs.end > out_w || ys.end > out_h || xs.start > xs.end || ys.start > ys.end {
        return Err(Error::invalid(format!("window {xs:?} x {ys:?} is outside the {out_w}x{out_h} output")));
    }
    let (nx, ny) = (xs.len(), ys.len());
    if nx == 0 || ny == 0 {
        return Ok(RgbImage::new(nx as u32, ny as u32));
    }
    // An unchanged axis gets no pass: its taps are the identity on the window.
    let htaps = if out_w != in_w { Some(precompute_taps(in_w, out_w, xs.clone(), filter)?) } else { None };
    let vtaps = if out_h != in_h { Some(precompute_taps(in_h, out_h, ys.clone(), filter)?) } else { None };
    let (cols, rows) = (
        htaps.as_ref().map_or((xs.start as usize, xs.end as usize), span),
        vtaps.as_ref().map_or((ys.start as usize, ys.end as usize), span),
    );
    let src_px = src.as_raw();
    let w = in_w as usize;
    let out = match (&htaps, &vtaps) {
        (Some(h), Some(v)) if pillow_vertical_first(in_w, in_h, out_w, out_h) => {
            let tmp = vertical_pass(src_px, w, cols.0..cols.1, 0, v);
            horizontal_pass(&tmp, cols.1 - cols.0, 0..ny, cols.0, h)
        }
        (Some(h), Some(v)) => {
            let tmp = horizontal_pass(src_px, w, rows.0..rows.1, 0, h);
            vertical_pass(&tmp, nx, 0..nx, rows.0, v)
        }
        (Some(h), None) => horizontal_pass(src_px, w, rows.0..rows.1, 0, h),
        (None, Some(v)) => vertical_pass(src_px, w, cols.0..cols.1, 0, v),
        (None, None) => {
            let mut out = Vec::with_capacity(nx * ny * 3);
            for y in rows.0..rows.1 {
                out.extend_from_slice(&src_px[(y * w + cols.0) * 3..(y * w + cols.1) * 3]);
            }
            out
        }
    };
    RgbImage::from_raw(nx as u32, ny as u32, out)
        .ok_or_else(|| Error::invalid("internal: resampled buffer size mismatch".to_string()))
}

// --- loading --------------------------------------------------------------------------------------

/// Decodes a PNG, JPEG or WebP file (detected from its bytes) with bounded memory: files over
/// `MAX_FILE_BYTES`, and images whose header declares a side over `MAX_IMAGE_SIDE` or an area over
/// `MAX_IMAGE_PIXELS`, are refused before any pixel buffer is allocated (a 30000×30000 PNG header is an
/// error, not a 3.6 GB allocation); the decoder's own allocations are capped by `image::Limits`. 0×0
/// and truncated or corrupt files are errors naming the file. The EXIF orientation is applied, as
/// diffusers' `load_image` (`PIL.ImageOps.exif_transpose`) does before the processor sees the image.
/// Decoding parity with Pillow 13 (checked by hand on a 640x360 image): PNG, lossless and lossy WebP
/// give Pillow's exact samples; JPEG does not: zune-jpeg's IDCT and chroma upsampling differ from
/// libjpeg-turbo's (q90 4:2:0: 28% of samples differ, by up to 8 levels; 4:4:4: 1.5%, up to 3).
pub fn load_image(path: impl AsRef<Path>) -> Result<DynamicImage> {
    let path = path.as_ref();
    let len = std::fs::metadata(path).map_err(|e| Error::Io { path: path.to_path_buf(), source: e })?.len();
    if len > MAX_FILE_BYTES {
        return Err(file_err(path, format!("image file is {len} bytes, over the {MAX_FILE_BYTES}-byte limit")));
    }
    let bytes = std::fs::read(path).map_err(|e| Error::Io { path: path.to_path_buf(), source: e })?;
    decode_image_bytes(&bytes).map_err(|msg| file_err(path, msg))
}

/// `load_image` on bytes already in memory; `Err` is the reason, for the caller to attach a name to.
pub fn decode_image_bytes(bytes: &[u8]) -> std::result::Result<DynamicImage, String> {
    let format = image::guess_format(bytes).map_err(|_| "not a PNG, JPEG or WebP image (unrecognized signature)".to_string())?;
    if !matches!(format, ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::WebP) {
        return Err(format!("{format:?} images are not supported (PNG, JPEG or WebP)"));
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(MAX_DECODE_ALLOC);
    reader.limits(limits);
    let describe = |e: image::ImageError| match e {
        image::ImageError::Limits(l) => format!(
            "image exceeds the decoding limits ({l}; at most {MAX_IMAGE_SIDE} pixels a side, {MAX_IMAGE_PIXELS} pixels)"
        ),
        other => format!("cannot decode {format:?} image: {other}"),
    };
    let mut decoder = reader.into_decoder().map_err(describe)?;
    let (w, h) = decoder.dimensions();
    if w == 0 || h == 0 {
        return Err(format!("image is {w}x{h}"));
    }
    if w as u64 * h as u64 > MAX_IMAGE_PIXELS {
        return Err(format!("image is {w}x{h}, over the {MAX_IMAGE_PIXELS}-pixel limit"));
    }
    let orientation = decoder.orientation().map_err(describe)?;
    let mut img = DynamicImage::from_decoder(decoder).map_err(describe)?;
    img.apply_orientation(orientation);
    // A 16-bit grayscale PNG with a tRNS chunk decodes to LumaA16, but PIL opens it as I;16 (clamping
    // conversion), unlike a true gray+alpha PNG: keep it as Luma16. IHDR color type is byte 25.
    if format == ImageFormat::Png && bytes.get(25) == Some(&0) {
        if let DynamicImage::ImageLumaA16(im) = &img {
            let luma = image::ImageBuffer::from_fn(im.width(), im.height(), |x, y| image::Luma([im.get_pixel(x, y).0[0]]));
            img = DynamicImage::ImageLuma16(luma);
        }
    }
    Ok(img)
}
