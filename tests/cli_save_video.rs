//! `wan save-video`: a synthetic video tensor (9 frames, 64×48, moving waves) written as MP4 is
//! decoded back by ffmpeg with the right codec (h264), pixel format (yuv420p), size, frame rate and
//! frame count, and pixels close to the input (PSNR bound); PNG frames round-trip exactly; the
//! safetensors output is the input; bad input is a clear error (exit 1) before anything is written.
//!
//! The decoder is the ffmpeg binary of the `imageio-ffmpeg` wheel (.ci/run installs it): without it the
//! MP4 decode check skips with a printed reason, and fails instead with `WANRT_REQUIRE_FFMPEG=1`.

use std::path::{Path, PathBuf};
use std::process::Command;

use wanrt::runtime::weights::{write_safetensors, SafeTensorsFile, StorageDType};

fn wan_bin() -> PathBuf {
    std::env::var_os("WANRT_WAN_BIN").map(Into::into).unwrap_or_else(|| env!("CARGO_BIN_EXE_wan").into())
}

fn wan(args: &[&str]) -> (i32, String) {
    let out = Command::new(wan_bin()).args(args).output().expect("run wan");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("wanrt-save-video-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

const F: usize = 9;
const H: usize = 48;
const W: usize = 64;

/// (1, 3, F, H, W) in [-1, 1]: smooth waves moving 4 px per frame, a different direction per channel
/// (smooth, as decoded video is: hard color edges are what 4:2:0 chroma cannot keep).
fn synthetic() -> Vec<f32> {
    let mut v = vec![0f32; 3 * F * H * W];
    for c in 0..3 {
        for f in 0..F {
            for y in 0..H {
                for x in 0..W {
                    let phase = (x + 4 * f) as f32 / W as f32 + y as f32 / H as f32 * c as f32 / 2.0;
                    v[((c * F + f) * H + y) * W + x] = 0.9 * (std::f32::consts::TAU * phase).sin();
                }
            }
        }
    }
    v
}

fn write_video(name: &str, dims: &[usize], values: &[f32]) -> PathBuf {
    let path = tmp(name);
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    write_safetensors(&path, &[("video", StorageDType::F32, dims, &bytes)], &[]).unwrap();
    path
}

/// The expected bytes of pixel (f, y, x, c), as diffusers' `numpy_to_pil` rounds.
fn expected_u8(v: &[f32], f: usize, y: usize, x: usize, c: usize) -> u8 {
    ((v[((c * F + f) * H + y) * W + x] / 2.0 + 0.5).clamp(0.0, 1.0) * 255.0).round_ties_even() as u8
}

/// ffmpeg from the imageio-ffmpeg wheel, or `None` (printed) when it is not installed.
fn ffmpeg() -> Option<PathBuf> {
    let found = Command::new("python3")
        .args(["-c", "import imageio_ffmpeg; print(imageio_ffmpeg.get_ffmpeg_exe())"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .filter(|p| p.is_file());
    if found.is_none() {
        if std::env::var("WANRT_REQUIRE_FFMPEG").is_ok_and(|v| v == "1") {
            panic!("WANRT_REQUIRE_FFMPEG=1 but the imageio-ffmpeg wheel's ffmpeg was not found (pip install imageio-ffmpeg)");
        }
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "skipping the MP4 decode check: no ffmpeg from imageio-ffmpeg (pip install imageio-ffmpeg)");
    }
    found
}

fn psnr(a: &[u8], b: &[u8]) -> f64 {
    let mse = a.iter().zip(b).map(|(&x, &y)| (x as f64 - y as f64).powi(2)).sum::<f64>() / a.len() as f64;
    10.0 * (255.0f64 * 255.0 / mse.max(1e-12)).log10()
}

#[test]
fn mp4_decodes_back_with_the_right_stream() {
    let v = synthetic();
    let input = write_video("in_mp4.safetensors", &[1, 3, F, H, W], &v);
    let out = tmp("out.mp4");
    let (code, text) = wan(&["save-video", "--in", input.to_str().unwrap(), "--out", out.to_str().unwrap(), "--fps", "16"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("9 frames"), "{text}");
    let Some(ffmpeg) = ffmpeg() else { return };
    // Stream facts from ffmpeg's description of the input.
    let probe = Command::new(&ffmpeg).args(["-hide_banner", "-i"]).arg(&out).output().unwrap();
    let info = String::from_utf8_lossy(&probe.stderr).to_string();
    let stream = info.lines().find(|l| l.contains("Video:")).unwrap_or_else(|| panic!("no video stream:\n{info}"));
    for want in ["h264", "yuv420p", "64x48", "16 fps"] {
        assert!(stream.contains(want), "{want} not in: {stream}");
    }
    // Decode to RGB (BT.601 limited range, as the stream is flagged) with interpolated chroma: swscale's
    // default nearest-chroma conversion alone costs ~6 dB on saturated gradients.
    let raw = Command::new(&ffmpeg)
        .args(["-hide_banner", "-loglevel", "error", "-i"])
        .arg(&out)
        .args(["-sws_flags", "bicubic+accurate_rnd+full_chroma_int", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .unwrap();
    assert!(raw.status.success(), "{}", String::from_utf8_lossy(&raw.stderr));
    let frame_bytes = H * W * 3;
    assert_eq!(raw.stdout.len(), F * frame_bytes, "decoded {} bytes, want {F} frames", raw.stdout.len());
    for f in 0..F {
        let want: Vec<u8> = (0..H * W * 3).map(|i| expected_u8(&v, f, i / 3 / W, i / 3 % W, i % 3)).collect();
        let got = &raw.stdout[f * frame_bytes..][..frame_bytes];
        let p = psnr(got, &want);

        assert!(p > 35.0, "frame {f}: PSNR {p:.1} dB");
    }
}

#[test]
fn png_frames_round_trip_exactly() {
    let v = synthetic();
    // A (3, F, H, W) tensor (no batch axis) under another key.
    let path = tmp("in_png.safetensors");
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    write_safetensors(&path, &[("frames", StorageDType::F32, &[3, F, H, W], &bytes)], &[]).unwrap();
    let dir = tmp("frames/");
    let dir_arg = format!("{}/", dir.to_str().unwrap().trim_end_matches('/'));
    let (code, text) = wan(&["save-video", "--in", path.to_str().unwrap(), "--key", "frames", "--out", &dir_arg]);
    assert_eq!(code, 0, "{text}");
    for f in 0..F {
        let img = image::open(dir.join(format!("frame_{f:05}.png"))).unwrap().to_rgb8();
        assert_eq!((img.width() as usize, img.height() as usize), (W, H));
        for (x, y, px) in img.enumerate_pixels() {
            for c in 0..3 {
                assert_eq!(px[c], expected_u8(&v, f, y as usize, x as usize, c), "frame {f} ({x}, {y}) channel {c}");
            }
        }
    }
    assert!(!dir.join(format!("frame_{F:05}.png")).exists());
}

#[test]
fn safetensors_output_is_the_input() {
    let v = synthetic();
    let input = write_video("in_st.safetensors", &[1, 3, F, H, W], &v);
    let out = tmp("copy.safetensors");
    let (code, text) = wan(&["save-video", "--in", input.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(code, 0, "{text}");
    let f = SafeTensorsFile::open(&out).unwrap();
    assert_eq!(f.info("video").unwrap().shape, vec![1, 3, F, H, W]);
    assert_eq!(f.bytes("video").unwrap(), SafeTensorsFile::open(&input).unwrap().bytes("video").unwrap());
}

fn refused(args: &[&str], needles: &[&str], not_written: &Path) {
    let (code, text) = wan(args);
    assert_eq!(code, 1, "{args:?}: {text}");
    for n in needles {
        assert!(text.contains(n), "{args:?}: {n:?} not in: {text}");
    }
    assert!(!not_written.exists(), "{args:?} wrote {}", not_written.display());
}

#[test]
fn bad_input_is_refused_before_writing() {
    let good = write_video("good.safetensors", &[1, 3, F, H, W], &synthetic());
    let g = good.to_str().unwrap();
    let out = tmp("never.mp4");
    let o = out.to_str().unwrap();
    refused(&["save-video", "--in", g, "--key", "latents", "--out", o], &["latents", "not in this file", "video"], &out);
    let rank = write_video("rank.safetensors", &[F, H, W], &vec![0.0; F * H * W]);
    refused(&["save-video", "--in", rank.to_str().unwrap(), "--out", o], &["(B, 3, F, H, W)"], &out);
    let hwc = write_video("hwc.safetensors", &[1, F, H, W, 3], &vec![0.0; F * H * W * 3]);
    refused(&["save-video", "--in", hwc.to_str().unwrap(), "--out", o], &["channels"], &out);
    let mut nan = synthetic();
    nan[3 * H * W + 5] = f32::NAN;
    let nan = write_video("nan.safetensors", &[1, 3, F, H, W], &nan);
    refused(&["save-video", "--in", nan.to_str().unwrap(), "--out", o], &["not finite", "frame 3"], &out);
    let odd = write_video("odd.safetensors", &[1, 3, 1, 5, 7], &vec![0.0; 3 * 35]);
    refused(&["save-video", "--in", odd.to_str().unwrap(), "--out", o], &["even"], &out);
    let batch = write_video("batch.safetensors", &[2, 3, 1, 4, 4], &vec![0.0; 2 * 3 * 16]);
    refused(&["save-video", "--in", batch.to_str().unwrap(), "--out", o], &["2 videos"], &out);
    refused(&["save-video", "--in", g, "--out", "/nonexistent-dir/x.mp4"], &["does not exist"], Path::new("/nonexistent-dir/x.mp4"));
    let gif = tmp("x.gif");
    refused(&["save-video", "--in", g, "--out", gif.to_str().unwrap()], &["unknown output kind"], &gif);
    refused(&["save-video", "--in", "/nonexistent.safetensors", "--out", o], &["/nonexistent.safetensors"], &out);
    let (code, text) = wan(&["save-video", "--in", g, "--out", o, "--fps", "0"]);
    assert_eq!(code, 2, "a usage error: {text}");
}
