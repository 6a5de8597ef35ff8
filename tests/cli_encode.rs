//! `wan encode`: bad input is a clear error before any device work (these run without a GPU), and on
//! a GPU the written embeddings are the encoders' (UMT5 through the tokenizer at 512 positions, CLIP
//! through the image processor against the transformers fixture).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use wanrt::runtime::tensor::bytes_to_f32;
use wanrt::runtime::weights::SafeTensorsFile;
use wanrt::DType;

fn wan() -> PathBuf {
    std::env::var_os("WANRT_WAN_BIN").map(Into::into).unwrap_or_else(|| env!("CARGO_BIN_EXE_wan").into())
}

/// A Diffusers-like root assembled from the UMT5 and CLIP fixtures (symbolic links).
fn root(tag: &str) -> PathBuf {
    let tmp = std::env::temp_dir().join(format!("wanrt-encode-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap();
    for (case, part) in [("umt5", "tokenizer"), ("umt5", "text_encoder"), ("clip", "image_encoder"), ("clip", "image_processor")] {
        std::os::unix::fs::symlink(common::fixture(case).join(part), tmp.join(part)).unwrap();
    }
    tmp
}

fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(wan()).arg("encode").args(args).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn bad_inputs_are_errors_before_the_gpu() {
    let r = root("bad");
    let rs = r.to_str().unwrap();
    let out = r.join("e.safetensors");
    let o = out.to_str().unwrap();
    // A missing component names it.
    let empty = std::env::temp_dir().join(format!("wanrt-encode-empty-{}", std::process::id()));
    std::fs::create_dir_all(empty.join("tokenizer")).unwrap();
    std::fs::copy(common::fixture("umt5").join("tokenizer/tokenizer.json"), empty.join("tokenizer/tokenizer.json")).unwrap();
    let (code, err) = run(&["--model", empty.to_str().unwrap(), "--prompt", "a cat", "--out", o]);
    assert!(code == 1 && err.contains("text_encoder"), "{code}: {err}");
    // No tokenizer at all.
    let (code, err) = run(&["--model", "/nonexistent-wan-root", "--prompt", "a cat", "--out", o]);
    assert!(code == 1 && err.contains("tokenizer"), "{code}: {err}");
    // An output path that cannot be written.
    let (code, err) = run(&["--model", rs, "--prompt", "a cat", "--out", "/nonexistent-dir/e.safetensors"]);
    assert!(code == 1 && err.contains("does not exist"), "{code}: {err}");
    // An unreadable image, and a truncated one.
    let (code, err) = run(&["--model", rs, "--prompt", "a cat", "--image", "/nonexistent.png", "--out", o]);
    assert!(code == 1 && err.contains("nonexistent.png"), "{code}: {err}");
    let bad = r.join("truncated.png");
    let png = std::fs::read(common::fixture("clip").join("image.png")).unwrap();
    std::fs::write(&bad, &png[..png.len() / 3]).unwrap();
    let (code, err) = run(&["--model", rs, "--prompt", "a cat", "--image", bad.to_str().unwrap(), "--out", o]);
    assert!(code == 1 && err.contains("truncated.png"), "{code}: {err}");
    // None of these reached the GPU: without one the error would be the device's (exit 2).
    assert!(!err.contains("GPU"), "{err}");
    let _ = std::fs::remove_dir_all(&r);
    let _ = std::fs::remove_dir_all(&empty);
}

fn tensor(path: &Path, name: &str) -> (Vec<usize>, Vec<f32>) {
    let f = SafeTensorsFile::open(path).unwrap();
    let info = f.info(name).unwrap_or_else(|| panic!("{name} missing"));
    let dt = match info.dtype.name() {
        "BF16" => DType::BF16,
        "F32" => DType::F32,
        other => panic!("{other}"),
    };
    (info.shape.to_vec(), bytes_to_f32(f.bytes(name).unwrap(), dt))
}

#[test]
fn wan_encode_writes_the_encoders_embeddings() {
    if common::gpu("wan encode CLI").is_none() {
        return;
    }
    let r = root("ok");
    let out = r.join("embeds.safetensors");
    let image = common::fixture("clip").join("image.png");
    let args = ["--model", r.to_str().unwrap(), "--prompt", "A cat walks on the grass in the morning light.", "--negative-prompt", "", "--image", image.to_str().unwrap(), "--out", out.to_str().unwrap(), "--precision", "fp32", "--offload", "leaf", "--vram", "64MiB"];
    let (code, err) = run(&args);
    assert_eq!(code, 0, "{err}");
    let (s, p) = tensor(&out, "prompt_embeds");
    let (sn, n) = tensor(&out, "negative_prompt_embeds");
    assert_eq!((s.as_slice(), sn.as_slice()), (&[1, 512, 128][..], &[1, 512, 128][..]));
    // The prompt has 12 tokens + EOS in the fixture tokenizer (prompts.json); the negative prompt ""
    // is EOS alone: rows past them are exact zeros, rows within them are not.
    let nonzero_rows = |v: &[f32]| v.chunks(128).take_while(|r| r.iter().any(|&x| x != 0.0)).count();
    let (rows_p, rows_n) = (nonzero_rows(&p), nonzero_rows(&n));
    assert!(rows_p > 1 && p[rows_p * 128..].iter().all(|&x| x == 0.0), "prompt rows {rows_p}");
    assert!(rows_n == 1 && n[128..].iter().all(|&x| x == 0.0), "negative prompt rows {rows_n}");
    // The image embedding is the fixture's, through our image processor and CLIP (fp32 within 1e-5).
    let (si, img) = tensor(&out, "image_embeds");
    let (sr, want) = tensor(&common::fixture("clip").join("fp32.safetensors"), "image_embeds");
    assert_eq!(si, sr);
    let num: f64 = img.iter().zip(&want).map(|(a, b)| (*a as f64 - *b as f64).powi(2)).sum();
    let den: f64 = want.iter().map(|b| (*b as f64).powi(2)).sum();
    assert!((num / den).sqrt() <= 1e-5, "image_embeds rel_rms {:.3e}", (num / den).sqrt());
    let _ = std::fs::remove_dir_all(&r);
}
