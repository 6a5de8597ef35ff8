//! `wan forward` end to end on the T2V fixture folder: the written `sample` matches the diffusers
//! bf16 reference (the metric of tests/gpu_transformer.rs), and a leaf-streamed run under a small
//! VRAM budget writes exactly the bytes of the resident run.

mod common;

use std::process::Command;

use wanrt::runtime::tensor::bytes_to_f32;
use wanrt::runtime::weights::SafeTensorsFile;
use wanrt::DType;

fn rel_rms(a: &[f32], b: &[f32]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| (*x as f64 - *y as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    if a.iter().any(|v| !v.is_finite()) {
        return f64::INFINITY;
    }
    (num / den).sqrt()
}

fn sample(path: &std::path::Path, name: &str) -> Vec<f32> {
    let f = SafeTensorsFile::open(path).unwrap();
    let dt = match f.info(name).unwrap().dtype.name() {
        "BF16" => DType::BF16,
        "F32" => DType::F32,
        other => panic!("{other}"),
    };
    bytes_to_f32(f.bytes(name).unwrap(), dt)
}

#[test]
fn wan_forward_matches_the_reference_in_every_placement() {
    if common::gpu("wan forward CLI").is_none() {
        return;
    }
    let dir = common::fixture("transformer_t2v");
    let tmp = std::env::temp_dir().join(format!("wanrt-cli-forward-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let run = |extra: &[&str], out: &str| {
        let out = tmp.join(out);
        let mut args = vec!["forward", "--model", dir.to_str().unwrap(), "--inputs"];
        let inputs = dir.join("inputs.safetensors");
        args.push(inputs.to_str().unwrap());
        args.extend_from_slice(&["--out", out.to_str().unwrap()]);
        args.extend_from_slice(extra);
        let o = Command::new(wan_bin()).args(&args).output().unwrap();
        assert!(o.status.success(), "wan {args:?}: {}", String::from_utf8_lossy(&o.stderr));
        out
    };
    let resident = run(&["--offload", "resident"], "resident.safetensors");
    let leaf = run(&["--offload", "leaf", "--vram", "48MiB"], "leaf.safetensors");
    let a = std::fs::read(&resident).unwrap();
    let b = std::fs::read(&leaf).unwrap();
    assert!(a == b, "leaf streaming under a 48 MiB budget must write the resident run's bytes");
    let ours = sample(&resident, "sample");
    let r16 = sample(&dir.join("reference_bf16.safetensors"), "sample");
    let r32 = sample(&dir.join("reference_fp32.safetensors"), "sample");
    let (err, bound) = (rel_rms(&ours, &r16), rel_rms(&r16, &r32).max(1.0 / 256.0));
    assert!(err <= bound, "sample rel RMS {err:.3e} > {bound:.3e}");
    let _ = std::fs::remove_dir_all(&tmp);
}

/// The `wan` program: `WANRT_WAN_BIN` when set (test binaries carried to the GPU machine run from
/// another checkout, see scripts/gpu-run.sh), else the one cargo built with this test.
fn wan_bin() -> std::path::PathBuf {
    std::env::var_os("WANRT_WAN_BIN").map(Into::into).unwrap_or_else(|| env!("CARGO_BIN_EXE_wan").into())
}
