//! `wan plan` validates a model folder and prints the plan without a GPU; bad folders and bad
//! options are clear errors (exit code 1, message naming the tensor or file), never a panic.

use std::path::{Path, PathBuf};
use std::process::Command;

use wanrt::runtime::weights::{write_safetensors, SafeTensorsFile};

fn fixture() -> PathBuf {
    std::env::var_os("WANRT_REPO_ROOT").map(PathBuf::from).unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()).join("tests/fixtures/transformer_t2v/transformer")
}

fn wan(args: &[&str]) -> (i32, String) {
    let out = Command::new(wan_bin()).args(args).output().expect("run wan");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

fn plan(dir: &Path, extra: &[&str]) -> (i32, String) {
    let mut args = vec!["plan", "--model", dir.to_str().unwrap(), "--frames", "9", "--height", "80", "--width", "112"];
    if !extra.contains(&"--vram") {
        args.extend_from_slice(&["--vram", "4GiB"]);
    }
    args.extend_from_slice(extra);
    wan(&args)
}

/// A copy of the fixture folder whose weights file is rewritten by `edit`.
fn broken(name: &str, edit: impl Fn(&mut Vec<(String, wanrt::runtime::weights::StorageDType, Vec<usize>, Vec<u8>)>)) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wanrt-cli-plan-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(fixture().join("config.json"), dir.join("config.json")).unwrap();
    let src = SafeTensorsFile::open(fixture().join("diffusion_pytorch_model.safetensors")).unwrap();
    let mut tensors: Vec<_> = src.tensors().iter().map(|t| (t.name.clone(), t.dtype, t.shape.clone(), src.bytes(&t.name).unwrap().to_vec())).collect();
    edit(&mut tensors);
    let entries: Vec<_> = tensors.iter().map(|(n, d, s, b)| (n.as_str(), *d, s.as_slice(), b.as_slice())).collect();
    write_safetensors(dir.join("diffusion_pytorch_model.safetensors"), &entries, &[]).unwrap();
    dir
}

#[test]
fn good_folder_prints_a_plan() {
    let (code, text) = plan(&fixture(), &[]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("tensors checked") && text.contains("offload plan"), "{text}");
    let (code, text) = plan(&fixture(), &["--offload", "block:2", "--slots", "3"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("block"), "{text}");
}

#[test]
fn missing_misshapen_and_truncated_weights_are_named() {
    let dir = broken("missing", |t| t.retain(|(n, ..)| n != "blocks.1.ffn.net.2.bias"));
    let (code, text) = plan(&dir, &[]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("blocks.1.ffn.net.2.bias"), "{text}");

    let dir = broken("shape", |t| {
        let e = t.iter_mut().find(|(n, ..)| n == "blocks.0.attn1.to_q.bias").unwrap();
        e.2 = vec![e.2[0] / 2];
        e.3.truncate(e.3.len() / 2);
    });
    let (code, text) = plan(&dir, &[]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("blocks.0.attn1.to_q.bias") && text.contains("shape"), "{text}");

    let dir = broken("extra", |t| t.push(("blocks.9.mystery.weight".into(), wanrt::runtime::weights::StorageDType::F32, vec![2], vec![0; 8])));
    let (code, text) = plan(&dir, &[]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("blocks.9.mystery.weight"), "{text}");

    let dir = broken("truncated", |_| {});
    let f = dir.join("diffusion_pytorch_model.safetensors");
    let len = std::fs::metadata(&f).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(&f).unwrap();
    file.set_len(len - 1000).unwrap();
    let (code, text) = plan(&dir, &[]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("diffusion_pytorch_model.safetensors"), "{text}");
}

#[test]
fn bad_options_and_folders_are_errors() {
    // A value that does not parse is a usage error (2, from the argument parser, naming the flag);
    // one that parses but does not fit the model or the other options is an error (1).
    for (args, needle, want) in [
        (vec!["--vram", "2MiB"], "minimum", 1),
        (vec!["--offload", "blocks:x"], "--offload", 2),
        (vec!["--slots", "1"], "slots", 1),
        (vec!["--sync"], "--sync", 1),
        (vec!["--vram", "lots"], "lots", 2),
    ] {
        let (code, text) = plan(&fixture(), &args);
        assert_eq!(code, want, "{args:?}: {text}");
        assert!(text.contains(needle), "{args:?}: {text}");
    }
    let (code, text) = wan(&["plan", "--model", "/nonexistent/folder", "--vram", "1GiB"]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("/nonexistent/folder"), "{text}");
    let (code, text) = wan(&["plan", "--model", fixture().to_str().unwrap(), "--vram", "1GiB", "--frames", "10"]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("4k+1"), "{text}");
}

/// The `wan` program: `WANRT_WAN_BIN` when set (test binaries carried to the GPU machine run from
/// another checkout, see scripts/gpu-run.sh), else the one cargo built with this test.
fn wan_bin() -> std::path::PathBuf {
    std::env::var_os("WANRT_WAN_BIN").map(Into::into).unwrap_or_else(|| env!("CARGO_BIN_EXE_wan").into())
}

#[test]
fn presets_plan_without_files() {
    let (code, text) = wan(&["plan", "--preset", "wan2.1-t2v-14b", "--vram", "12GiB"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("offload plan"), "{text}");
    let (code, text) = wan(&["plan", "--preset", "wan2.1-t2v-14b", "--vram", "1GiB"]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("minimum"), "{text}");
    let (code, text) = wan(&["plan", "--preset", "wan2.2-nope", "--vram", "1GiB"]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("unknown preset"), "{text}");
    let (code, _) = wan(&["plan", "--vram", "1GiB"]);
    assert_eq!(code, 2, "neither --model nor --preset is a usage error");
    // The byte ring: printed with its size; refused with --sync.
    let (code, text) = wan(&["plan", "--preset", "wan2.1-t2v-14b", "--vram", "12GiB", "--offload", "leaf", "--ring"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("byte ring"), "{text}");
    let (code, text) = wan(&["plan", "--preset", "wan2.1-t2v-14b", "--vram", "12GiB", "--offload", "leaf", "--ring", "--sync"]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("--sync"), "{text}");
}

/// A malformed environment switch stops every command before any work (exit 1), naming the
/// variable, the value and the accepted values: `wan plan` needs no GPU, and `wan bench` reports the
/// switch before opening the device (without a GPU that would be exit 2, naming the driver).
#[test]
fn malformed_switches_are_errors() {
    let wan_env = |env: &[(&str, &str)], args: &[&str]| {
        let out = Command::new(wan_bin()).envs(env.iter().copied()).args(args).output().expect("run wan");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.code().unwrap_or(-1), text)
    };
    let plan = ["plan", "--preset", "wan2.1-t2v-1.3b", "--vram", "8GiB"];
    for env in [vec![], vec![("WANRT_CONV", "wgmma"), ("WANRT_PACKED", "off")], vec![("WANRT_CONV", ""), ("WANRT_PACKED", "")]] {
        let (code, text) = wan_env(&env, &plan);
        assert_eq!(code, 0, "{env:?}: {text}");
    }
    let (code, text) = wan_env(&[("WANRT_CONV", "bogus")], &plan);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains(r#"error: environment: WANRT_CONV="bogus" is not one of auto, portable, mma, wgmma"#), "{text}");
    assert!(!text.contains("offload plan"), "no work after the error: {text}");
    let bench = ["bench", "--preset", "wan2.1-t2v-1.3b", "--frames", "1", "--height", "16", "--width", "16", "--iters", "1"];
    let (code, text) = wan_env(&[("WANRT_PACKED", "no"), ("WANRT_CONV_F32", "tf33")], &bench);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains(r#"WANRT_PACKED="no" is not one of 0, 1, true, false, on, off"#), "{text}");
    assert!(text.contains(r#"WANRT_CONV_F32="tf33" is not one of tf32x3, exact"#), "{text}");
}
