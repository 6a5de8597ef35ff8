//! `wan vae encode` / `wan vae decode`: every bad input is a clear error before any device work
//! (exit code 1 naming the file, key or shape; these run without a GPU: reaching the device there
//! would exit 2), and on a GPU the written files match diffusers' fixture (fp32, relative RMS ≤ 1e-5).

mod common;

use std::path::PathBuf;
use std::process::Command;

use wanrt::runtime::tensor::bytes_to_f32;
use wanrt::runtime::weights::{write_safetensors, SafeTensorsFile, StorageDType};
use wanrt::DType;

fn wan() -> PathBuf {
    std::env::var_os("WANRT_WAN_BIN").map(Into::into).unwrap_or_else(|| env!("CARGO_BIN_EXE_wan").into())
}

fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(wan()).arg("vae").args(args).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("wanrt-cli-vae-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A safetensors file with one f32 tensor `key` of `shape` (values `v`).
fn file(dir: &std::path::Path, name: &str, key: &str, shape: &[usize], v: f32) -> String {
    let n: usize = shape.iter().product();
    let vals = vec![v; n];
    let p = dir.join(name);
    write_safetensors(&p, &[(key, StorageDType::from(DType::F32), shape, bytemuck::cast_slice(&vals))], &[]).unwrap();
    p.to_str().unwrap().to_string()
}

#[test]
fn bad_inputs_are_errors_before_the_gpu() {
    let d = tmp("bad");
    let model = common::fixture("vae");
    let m = model.to_str().unwrap();
    let out = d.join("o.safetensors");
    let o = out.to_str().unwrap();
    let inputs = common::fixture("vae/inputs.safetensors");
    let video = inputs.to_str().unwrap();
    let check = |args: &[&str], want: &[&str]| {
        let (code, err) = run(args);
        assert!(code == 1 && want.iter().all(|w| err.contains(w)), "{args:?}: exit {code}: {err}");
    };
    // Missing model folder, folder without a VAE config, unwritable output.
    check(&["encode", "--model", "/nonexistent-vae-root", "--video", video, "--out", o], &["nonexistent-vae-root"]);
    check(&["decode", "--model", d.to_str().unwrap(), "--latents", video, "--out", o], &["config.json"]);
    check(&["encode", "--model", m, "--video", video, "--out", "/nonexistent-dir/o.safetensors"], &["does not exist"]);
    check(&["encode", "--model", m, "--video", video, "--out", d.to_str().unwrap()], &["is a folder"]);
    // Missing input file, missing key (the fixture's inputs hold `video` and `image`, no `latents`).
    check(&["encode", "--model", m, "--video", "/nonexistent.safetensors", "--out", o], &["nonexistent.safetensors", "not a file"]);
    check(&["decode", "--model", m, "--latents", video, "--out", o], &["latents", "not in the file"]);
    // Encode: frames not 4k + 1, sizes not multiples of 8, wrong channels, wrong rank, not finite.
    check(&["encode", "--model", m, "--video", &file(&d, "f8.safetensors", "video", &[1, 3, 8, 24, 40], 0.1), "--out", o], &["4k + 1", "[1, 3, 8, 24, 40]"]);
    check(&["encode", "--model", m, "--video", &file(&d, "h.safetensors", "video", &[1, 3, 5, 20, 40], 0.1), "--out", o], &["multiples of 8"]);
    check(&["encode", "--model", m, "--video", &file(&d, "c.safetensors", "video", &[1, 4, 5, 24, 40], 0.1), "--out", o], &["video", "[1, 4, 5, 24, 40]"]);
    check(&["encode", "--model", m, "--video", &file(&d, "r.safetensors", "video", &[3, 5, 24, 40], 0.1), "--out", o], &["video", "[3, 5, 24, 40]"]);
    check(&["encode", "--model", m, "--video", &file(&d, "nan.safetensors", "video", &[1, 3, 1, 8, 8], f32::NAN), "--out", o], &["not finite"]);
    // Decode: wrong latent channels, empty grid, wrong rank.
    check(&["decode", "--model", m, "--latents", &file(&d, "z15.safetensors", "latents", &[1, 15, 2, 3, 5], 0.1), "--out", o], &["latents", "[1, 15, 2, 3, 5]"]);
    check(&["decode", "--model", m, "--latents", &file(&d, "z0.safetensors", "latents", &[1, 16, 0, 3, 5], 0.1), "--out", o], &["empty"]);
    check(&["decode", "--model", m, "--latents", &file(&d, "z4.safetensors", "latents", &[16, 2, 3, 5], 0.1), "--out", o], &["latents"]);
    // A --vram size too small for the weights and activations, refused before the device opens.
    check(&["encode", "--model", m, "--video", video, "--out", o, "--vram", "1MiB"], &["needs", "budget is 1.00 MiB"]);
    check(&["decode", "--model", m, "--latents", &file(&d, "z.safetensors", "latents", &[1, 16, 2, 3, 5], 0.1), "--out", o, "--vram", "64KiB"], &["needs"]);
    // Latents stored as integers; a --tile that is not a positive multiple of 8; a budget too small
    // for any tile names the minimum (the tile planner's error).
    let zi = d.join("zi.safetensors");
    write_safetensors(&zi, &[("latents", StorageDType::I32, &[1, 16, 2, 3, 5], &vec![0u8; 4 * 16 * 2 * 3 * 5])], &[]).unwrap();
    check(&["decode", "--model", m, "--latents", zi.to_str().unwrap(), "--out", o], &["latents", "expected a float dtype"]);
    let z = file(&d, "zt.safetensors", "latents", &[1, 16, 2, 3, 5], 0.1);
    check(&["decode", "--model", m, "--latents", &z, "--out", o, "--tile", "12", "--vram", "1GiB"], &["--tile 12", "multiple of 8"]);
    check(&["decode", "--model", m, "--latents", &z, "--out", o, "--vram", "64KiB"], &["needs at least", "budget is 64.00 KiB"]);
    // The same for encode: its tiles are planned the same way.
    check(&["encode", "--model", m, "--video", video, "--out", o, "--tile", "12", "--vram", "1GiB"], &["--tile 12", "multiple of 8"]);
    check(&["encode", "--model", m, "--video", video, "--out", o, "--tile", "0", "--vram", "1GiB"], &["--tile 0", "multiple of 8"]);
    check(&["encode", "--model", m, "--video", video, "--out", o, "--vram", "64KiB"], &["vae encode", "needs at least", "budget is 64.00 KiB"]);
    // A bad precision is a usage error naming the flag.
    let (code, err) = run(&["decode", "--model", m, "--latents", video, "--out", o, "--precision", "fp8"]);
    assert!(code == 2 && err.contains("--precision"), "{code}: {err}");
    assert!(!out.exists(), "no output on error");
}

fn read(path: &std::path::Path, key: &str) -> Vec<f32> {
    let f = SafeTensorsFile::open(path).unwrap();
    bytes_to_f32(f.bytes(key).unwrap(), DType::F32)
}

fn rel_rms(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let (n, d) = a.iter().zip(b).fold((0f64, 0f64), |(n, d), (x, y)| (n + (*x as f64 - *y as f64).powi(2), d + (*y as f64).powi(2)));
    (n / d).sqrt()
}

#[test]
fn encode_and_decode_match_the_fixture() {
    if common::gpu("encode_and_decode_match_the_fixture").is_none() {
        return;
    }
    let d = tmp("gpu");
    let model = common::fixture("vae");
    let refs = common::fixture("vae/fp32.safetensors");
    // The fixture's video under the key `video` is the CLI's input as is.
    let lat = d.join("latents.safetensors");
    let (code, err) = run(&["encode", "--model", model.to_str().unwrap(), "--video", common::fixture("vae/inputs.safetensors").to_str().unwrap(), "--out", lat.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let e = rel_rms(&read(&lat, "latents"), &read(&refs, "video.latent_mode"));
    assert!(e <= 1e-5, "encode: relative RMS {e:.3e}");
    // Decode the reference's own mode (as its `decoded` was made), written under the key `latents`.
    let zref = d.join("zref.safetensors");
    let z = read(&refs, "video.latent_mode");
    write_safetensors(&zref, &[("latents", StorageDType::from(DType::F32), &[1, 16, 3, 3, 5], bytemuck::cast_slice(&z))], &[]).unwrap();
    let vid = d.join("video.safetensors");
    let (code, err) = run(&["decode", "--model", model.to_str().unwrap(), "--latents", zref.to_str().unwrap(), "--out", vid.to_str().unwrap(), "--precision", "fp32"]);
    assert_eq!(code, 0, "{err}");
    let e = rel_rms(&read(&vid, "video"), &read(&refs, "video.decoded"));
    assert!(e <= 1e-5, "decode: relative RMS {e:.3e}");
}
