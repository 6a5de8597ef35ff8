//! CLIP preprocessing (models/clip/preprocess.rs) against transformers' `CLIPImageProcessor` (PIL
//! backend, transformers 5.17 / Pillow): tests/fixtures/clip/inputs.safetensors (gen_clip.py) and
//! tests/fixtures/clip/pixels/ (gen_clip_pixels.py: 13 PNGs of 9 PIL modes, 8 processor configs).
//!
//! Metrics: every uint8 stage (resize, crop) bit-equal; pixel_values within 1e-5 (they come out
//! bit-equal: rescale and normalize are the same f32/f64 IEEE operations as numpy's).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};
use wanrt::models::clip::preprocess::image::{self, DynamicImage, RgbImage};
use wanrt::models::clip::preprocess::{
    load_image, pillow_vertical_first, resample_rgb8, resample_window, to_rgb8_like_pil, ClipImageProcessor, Resample, ResizeTo, MAX_IMAGE_PIXELS,
};
use wanrt::Error;

const PV_TOL: f32 = 1e-5;

enum Want {
    F32(Vec<usize>, Vec<f32>),
    U8(Vec<usize>, Vec<u8>),
}

fn read_tensors(path: &Path) -> BTreeMap<String, Want> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut out = BTreeMap::new();
    for name in st.names() {
        let t = st.tensor(name).unwrap();
        let shape = t.shape().to_vec();
        let w = match t.dtype() {
            Dtype::F32 => Want::F32(shape, t.data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()),
            Dtype::U8 => Want::U8(shape, t.data().to_vec()),
            d => panic!("{name}: unexpected dtype {d:?}"),
        };
        out.insert(name.to_string(), w);
    }
    out
}

/// HWC RGB to CHW bytes.
fn chw(img: &RgbImage) -> Vec<u8> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let raw = img.as_raw();
    let mut out = vec![0u8; 3 * h * w];
    for c in 0..3 {
        for i in 0..h * w {
            out[c * h * w + i] = raw[i * 3 + c];
        }
    }
    out
}

fn assert_u8(what: &str, got_shape: [usize; 3], got: &[u8], want_shape: &[usize], want: &[u8]) {
    assert_eq!(&got_shape[..], want_shape, "{what}: shape");
    let bad = got.iter().zip(want).filter(|(a, b)| a != b).count();
    assert_eq!(bad, 0, "{what}: {bad} of {} bytes differ", want.len());
}

fn assert_pv(what: &str, got: &[f32], want_shape: &[usize], want: &[f32]) {
    let n: usize = want_shape.iter().product();
    assert_eq!(got.len(), n, "{what}: {} values, want shape {want_shape:?}", got.len());
    let max = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(max <= PV_TOL, "{what}: max |diff| {max} > {PV_TOL}");
}

fn pixels_dir() -> PathBuf {
    common::fixture("clip/pixels")
}

#[test]
fn fixture_image_stages_match_transformers() {
    let proc = ClipImageProcessor::from_folder(common::fixture("clip")).unwrap();
    assert_eq!(proc.size, ResizeTo::ShortestEdge(112));
    assert_eq!(proc.crop_size, (112, 112));
    let img = load_image(common::fixture("clip/image.png")).unwrap();
    let want = read_tensors(&common::fixture("clip/inputs.safetensors"));
    let rgb = to_rgb8_like_pil(&img).unwrap();
    let resized = proc.resize(&rgb).unwrap();
    let cropped = proc.center_crop(&resized);
    let Want::U8(s, r) = &want["resized_u8"] else { panic!("resized_u8 dtype") };
    assert_u8("resized_u8", [3, resized.height() as usize, resized.width() as usize], &chw(&resized), s, r);
    let Want::U8(s, c) = &want["cropped_u8"] else { panic!("cropped_u8 dtype") };
    assert_u8("cropped_u8", [3, 112, 112], &chw(&cropped), s, c);
    let Want::F32(s, pv) = &want["pixel_values"] else { panic!("pixel_values dtype") };
    let got = proc.preprocess(&img).unwrap();
    assert_pv("pixel_values", &got, s, pv);
    let (batch, shape) = proc.preprocess_batch(&[img.clone(), img]).unwrap();
    assert_eq!(shape, [2, 3, 112, 112]);
    assert_eq!(&batch[..got.len()], &got[..]);
    assert_eq!(&batch[got.len()..], &got[..]);
}

#[test]
fn generated_images_match_transformers() {
    let dir = pixels_dir();
    let want = read_tensors(&dir.join("expected.safetensors"));
    let mut procs: BTreeMap<String, ClipImageProcessor> = BTreeMap::new();
    let mut checked = BTreeMap::<&str, usize>::new();
    let mut images = std::collections::BTreeSet::new();
    for (key, w) in &want {
        let parts: Vec<&str> = key.split('.').collect();
        let [name, config, what] = parts[..] else { panic!("key {key}") };
        let proc = procs
            .entry(config.to_string())
            .or_insert_with(|| ClipImageProcessor::from_folder(dir.join(format!("processor_{config}"))).unwrap());
        let img = load_image(dir.join(format!("{name}.png"))).unwrap_or_else(|e| panic!("{key}: {e}"));
        images.insert(name);
        match (what, w) {
            ("pixel_values", Want::F32(shape, pv)) => {
                let got = proc.preprocess(&img).unwrap_or_else(|e| panic!("{key}: {e}"));
                assert_eq!(&proc.output_shape(img.height(), img.width())[..], &shape[..], "{key}: shape");
                assert_pv(key, &got, shape, pv);
            }
            ("resized_u8", Want::U8(shape, r)) => {
                let got = proc.resize(&to_rgb8_like_pil(&img).unwrap()).unwrap();
                assert_u8(key, [3, got.height() as usize, got.width() as usize], &chw(&got), shape, r);
            }
            ("cropped_u8", Want::U8(shape, c)) => {
                let rgb = to_rgb8_like_pil(&img).unwrap();
                let got = proc.center_crop(&proc.resize(&rgb).unwrap());
                assert_u8(key, [3, got.height() as usize, got.width() as usize], &chw(&got), shape, c);
                // pixel_values are the f32 rescale+normalize of this crop (checked bit for bit by the
                // generator); compare ours with that formula evaluated here.
                let pv = proc.preprocess(&img).unwrap();
                let n = c.len() / 3;
                let mut want_pv = vec![0f32; c.len()];
                for (i, v) in want_pv.iter_mut().enumerate() {
                    let ch = i / n;
                    let x = (c[i] as f64 * proc.rescale_factor) as f32;
                    *v = (x - proc.image_mean[ch] as f32) / proc.image_std[ch] as f32;
                }
                assert_pv(key, &pv, shape, &want_pv);
            }
            _ => panic!("{key}: unexpected entry"),
        }
        *checked.entry(what).or_default() += 1;
    }
    assert!(images.len() >= 13, "{images:?}");
    assert!(checked["pixel_values"] >= 20 && checked["resized_u8"] >= 5 && checked["cropped_u8"] >= 4, "{checked:?}");
    // The 224 config is the published Wan I2V one, i.e. the processor's defaults.
    assert_eq!(procs["wan224"], ClipImageProcessor::default());
    assert_eq!(procs["bilinear"].resample, Resample::Bilinear);
}

#[test]
fn resize_output_size_follows_transformers() {
    let p = ClipImageProcessor::default();
    // (h, w) -> (h', w'); the long side is int(224 * long / short).
    assert_eq!(p.resize_output_size(360, 640), (224, 398));
    assert_eq!(p.resize_output_size(1000, 333), (672, 224));
    assert_eq!(p.resize_output_size(224, 224), (224, 224));
    assert_eq!(p.resize_output_size(70, 50), (313, 224));
    assert_eq!(p.resize_output_size(480, 832), (224, 388));
    assert_eq!(p.resize_output_size(1, 16384), (224, 3670016));
}

#[test]
fn at_size_is_a_copy_and_window_equals_full_resize() {
    let img = load_image(pixels_dir().join("rgb_640x360.png")).unwrap();
    let rgb = to_rgb8_like_pil(&img).unwrap();
    assert_eq!(resample_rgb8(&rgb, 640, 360, Resample::Bicubic).unwrap(), rgb);
    // Horizontal-first (640x360 -> 101x57), vertical-first (-> 600x57) and one-pass windows.
    for (w, h) in [(101, 57), (600, 57), (640, 57), (101, 360), (900, 500)] {
        let full = resample_rgb8(&rgb, w, h, Resample::Bicubic).unwrap();
        let (x0, y0) = (w / 7, h / 9);
        let win = resample_window(&rgb, w, h, x0..w - x0 / 2, y0..h - y0, Resample::Bicubic).unwrap();
        let want = image::imageops::crop_imm(&full, x0, y0, w - x0 / 2 - x0, h - 2 * y0).to_image();
        assert!(win == want, "window of {w}x{h}");
    }
    assert!(pillow_vertical_first(640, 360, 600, 57) && !pillow_vertical_first(640, 360, 101, 57));
}

#[test]
fn config_errors_name_the_file() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("clip_preprocess_config");
    std::fs::create_dir_all(&dir).unwrap();
    let cases = [
        ("nearest.json", r#"{"resample": 0}"#, "NEAREST"),
        ("badmean.json", r#"{"image_mean": [0.5, 0.5]}"#, "image_mean"),
        ("longest.json", r#"{"size": {"longest_edge": 5}}"#, "size"),
        ("zero.json", r#"{"crop_size": {"height": 0, "width": 3}}"#, "crop_size"),
        ("notjson.json", "{", "preprocessor config"),
    ];
    for (file, text, needle) in cases {
        let p = dir.join(file);
        std::fs::write(&p, text).unwrap();
        let e = ClipImageProcessor::from_config_file(&p).expect_err(file).to_string();
        assert!(e.contains(file) && e.contains(needle), "{file}: {e}");
    }
    // Missing keys take CLIPImageProcessor's defaults; an int size means the shortest edge.
    let p = ClipImageProcessor::from_json_str(r#"{"size": 300, "crop_size": 256}"#).unwrap();
    assert_eq!((p.size, p.crop_size, p.resample), (ResizeTo::ShortestEdge(300), (256, 256), Resample::Bicubic));
    let e = ClipImageProcessor::from_folder(&dir).expect_err("no config").to_string();
    assert!(e.contains("preprocessor_config.json"), "{e}");
}

/// A PNG with an IHDR, a 2-byte IDAT (no pixel data) and IEND.
fn png_header_only(w: u32, h: u32) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, tag: &[u8; 4], data: &[u8]) {
        out.extend((data.len() as u32).to_be_bytes());
        out.extend(tag);
        out.extend(data);
        let mut c = tag.to_vec();
        c.extend(data);
        out.extend(crc32(&c).to_be_bytes());
    }
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &b in bytes {
            crc ^= b as u32;
            for _ in 0..8 {
                crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
            }
        }
        !crc
    }
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend(w.to_be_bytes());
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]); // 8-bit RGB
    chunk(&mut out, b"IHDR", &ihdr);
    // The start of an IDAT (a zlib header and nothing more): decoders read the header up to here.
    chunk(&mut out, b"IDAT", &[0x78, 0x9c]);
    chunk(&mut out, b"IEND", &[]);
    out
}

fn load_err(dir: &Path, file: &str, bytes: &[u8]) -> String {
    let p = dir.join(file);
    std::fs::write(&p, bytes).unwrap();
    let e = load_image(&p).expect_err(file);
    let s = e.to_string();
    assert!(matches!(e, Error::File { .. }), "{file}: {e:?}");
    assert!(s.contains(file), "{file}: error does not name the file: {s}");
    s
}

#[test]
fn bad_images_are_clear_errors() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("clip_preprocess_images");
    std::fs::create_dir_all(&dir).unwrap();

    let missing = dir.join("missing.png");
    let e = load_image(&missing).expect_err("missing").to_string();
    assert!(e.contains("missing.png"), "{e}");

    let e = load_err(&dir, "text.png", b"this is not an image");
    assert!(e.contains("unrecognized"), "{e}");

    let png = std::fs::read(common::fixture("clip/image.png")).unwrap();
    let e = load_err(&dir, "truncated.png", &png[..png.len() / 2]);
    assert!(e.contains("decode"), "{e}");

    let e = load_err(&dir, "zero.png", &png_header_only(0, 0));
    assert!(e.contains("decode") || e.contains("0x0"), "{e}");

    // Refused from the header alone: no pixel buffer (2.7 GB for 30000x30000 RGB) is allocated.
    let t = std::time::Instant::now();
    let e = load_err(&dir, "huge.png", &png_header_only(30000, 30000));
    assert!(e.contains("limit"), "{e}");
    let e = load_err(&dir, "wide.png", &png_header_only(16000, 16000));
    assert!(e.contains(&MAX_IMAGE_PIXELS.to_string()), "{e}");
    assert!(t.elapsed().as_secs() < 5);

    let proc = ClipImageProcessor::default();
    let e = proc.preprocess(&DynamicImage::new_rgb8(0, 0)).expect_err("0x0").to_string();
    assert!(e.contains("0x0"), "{e}");
    let e = proc.preprocess(&DynamicImage::new_rgb32f(4, 4)).expect_err("f32").to_string();
    assert!(e.contains("not supported"), "{e}");
    // Without a crop, an extreme aspect ratio would make a huge resize: refused, not allocated.
    let nocrop = ClipImageProcessor { do_center_crop: false, ..ClipImageProcessor::default() };
    let e = nocrop.preprocess(&DynamicImage::new_rgb8(1, 16384)).expect_err("huge resize").to_string();
    assert!(e.contains("limit"), "{e}");
}
