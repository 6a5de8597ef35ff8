//! Bad input to the `wan` program is a clear error before any work starts: `wan forward` checks its
//! inputs file against the model's config (rank, shape, dtype, channels, text width, the I2V pair,
//! T ≥ 1, batch against timestep) before it opens the device or reads a weight, so on a machine
//! without a GPU (CI) the input's error is what is reported, exit code 1, never the GPU's (2) or a
//! panic (101). Bounds on config.json, the sizes and options are checked the same way.

use std::path::{Path, PathBuf};
use std::process::Command;

use wanrt::runtime::weights::{write_safetensors, StorageDType};

fn root() -> PathBuf {
    std::env::var_os("WANRT_REPO_ROOT").map(PathBuf::from).unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into())
}

fn model(kind: &str) -> PathBuf {
    root().join(format!("tests/fixtures/transformer_{kind}/transformer"))
}

/// The `wan` program: `WANRT_WAN_BIN` when set (see scripts/gpu-run.sh), else cargo's.
fn wan_bin() -> PathBuf {
    std::env::var_os("WANRT_WAN_BIN").map(Into::into).unwrap_or_else(|| env!("CARGO_BIN_EXE_wan").into())
}

fn wan(args: &[&str]) -> (i32, String) {
    let out = Command::new(wan_bin()).args(args).output().expect("run wan");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("wanrt-cli-inputs-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

/// One tensor of an inputs file: name, dtype, shape (data zero-filled).
type T = (&'static str, StorageDType, Vec<usize>);

fn write_inputs(name: &str, tensors: &[T]) -> PathBuf {
    let path = tmp(name);
    let data: Vec<Vec<u8>> = tensors.iter().map(|(_, d, s)| vec![0u8; s.iter().product::<usize>() * d.size()]).collect();
    let entries: Vec<_> = tensors.iter().zip(&data).map(|((n, d, s), b)| (*n, *d, s.as_slice(), b.as_slice())).collect();
    write_safetensors(&path, &entries, &[]).unwrap();
    path
}

/// The T2V fixture's inputs: hidden (2, 16, 3, 10, 14), timestep (2,), text (2, 512, 64).
fn t2v() -> Vec<T> {
    vec![
        ("hidden_states", StorageDType::F32, vec![2, 16, 3, 10, 14]),
        ("timestep", StorageDType::I64, vec![2]),
        ("encoder_hidden_states", StorageDType::F32, vec![2, 512, 64]),
    ]
}

fn with(mut base: Vec<T>, name: &'static str, dtype: StorageDType, shape: Vec<usize>) -> Vec<T> {
    base.retain(|t| t.0 != name);
    base.push((name, dtype, shape));
    base
}

fn without(mut base: Vec<T>, name: &str) -> Vec<T> {
    base.retain(|t| t.0 != name);
    base
}

fn forward(kind: &str, inputs: &Path) -> (i32, String) {
    let out = tmp("out.safetensors");
    wan(&["forward", "--model", model(kind).to_str().unwrap(), "--inputs", inputs.to_str().unwrap(), "--out", out.to_str().unwrap(), "--vram", "1GiB"])
}

#[test]
fn forward_checks_inputs_before_the_gpu() {
    use StorageDType::*;
    let i2v = || with(with(t2v(), "hidden_states", F32, vec![2, 36, 3, 10, 14]), "encoder_hidden_states_image", F32, vec![2, 257, 96]);
    let cases: Vec<(&str, &str, Vec<T>, &[&str])> = vec![
        ("t2v", "rank4", with(t2v(), "hidden_states", F32, vec![2, 16, 10, 14]), &["hidden_states", "[B, 16, T, H, W]"]),
        ("t2v", "t0", with(t2v(), "hidden_states", F32, vec![2, 16, 0, 10, 14]), &["hidden_states", "T"]),
        ("t2v", "channels", with(t2v(), "hidden_states", F32, vec![2, 36, 3, 10, 14]), &["hidden_states", "in_channels 16"]),
        ("t2v", "odd", with(t2v(), "hidden_states", F32, vec![2, 16, 3, 9, 14]), &["hidden_states", "patch"]),
        ("t2v", "int", with(t2v(), "hidden_states", I32, vec![2, 16, 3, 10, 14]), &["hidden_states", "I32"]),
        ("t2v", "text", with(t2v(), "encoder_hidden_states", F32, vec![2, 512, 4096]), &["encoder_hidden_states", "text_dim 64"]),
        ("t2v", "text-rank", with(t2v(), "encoder_hidden_states", F32, vec![2, 64]), &["encoder_hidden_states"]),
        ("t2v", "text-batch", with(t2v(), "encoder_hidden_states", F32, vec![1, 512, 64]), &["encoder_hidden_states", "batch"]),
        ("t2v", "steps", with(t2v(), "timestep", I64, vec![3]), &["timestep", "batch of 2"]),
        ("t2v", "steps-type", with(t2v(), "timestep", U8, vec![2]), &["timestep", "U8"]),
        ("t2v", "no-text", without(t2v(), "encoder_hidden_states"), &["encoder_hidden_states", "missing"]),
        ("t2v", "no-steps", without(t2v(), "timestep"), &["timestep", "missing"]),
        ("t2v", "image-t2v", with(t2v(), "encoder_hidden_states_image", F32, vec![2, 257, 96]), &["encoder_hidden_states_image", "T2V"]),
        ("t2v", "stray", with(t2v(), "latents", F32, vec![1]), &["latents", "unexpected"]),
        ("i2v", "no-image", without(i2v(), "encoder_hidden_states_image"), &["encoder_hidden_states_image", "I2V"]),
        ("i2v", "image-width", with(i2v(), "encoder_hidden_states_image", F32, vec![2, 257, 1280]), &["encoder_hidden_states_image", "image_dim 96"]),
        ("i2v", "i2v-text", with(i2v(), "encoder_hidden_states", F32, vec![2, 77, 64]), &["encoder_hidden_states", "512"]),
    ];
    for (kind, name, tensors, needles) in cases {
        let path = write_inputs(&format!("{name}.safetensors"), &tensors);
        let (code, text) = forward(kind, &path);
        assert_eq!(code, 1, "{name}: exit {code}, expected the input's error (1), not the GPU's (2) or a panic: {text}");
        for n in needles {
            assert!(text.contains(n), "{name}: {n:?} not in {text}");
        }
        assert!(!text.contains("GPU") && !text.contains("panicked"), "{name}: {text}");
    }
    // Not a safetensors file at all: named, still before the GPU.
    let junk = tmp("junk.safetensors");
    std::fs::write(&junk, b"not a file").unwrap();
    let (code, text) = forward("t2v", &junk);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("junk.safetensors"), "{text}");
}

#[test]
fn config_values_are_bounded() {
    let base: serde_json::Value = serde_json::from_slice(&std::fs::read(model("t2v").join("config.json")).unwrap()).unwrap();
    for (key, value, needles) in [
        ("num_layers", serde_json::json!(10_000_000_000u64), &["num_layers", "at most"][..]),
        ("num_attention_heads", serde_json::json!(1u64 << 60), &["num_attention_heads", "at most"][..]),
        ("ffn_dim", serde_json::json!(u64::MAX), &["ffn_dim", "at most"][..]),
        ("text_dim", serde_json::json!(0), &["text_dim"][..]),
        ("rope_max_seq_len", serde_json::json!(1u64 << 40), &["rope_max_seq_len", "at most"][..]),
        ("out_channels", serde_json::json!(0), &["out_channels"][..]),
    ] {
        let dir = tmp(&format!("cfg-{key}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut cfg = base.clone();
        cfg[key] = value;
        std::fs::write(dir.join("config.json"), serde_json::to_vec(&cfg).unwrap()).unwrap();
        let (code, text) = wan(&["plan", "--model", dir.to_str().unwrap(), "--vram", "8GiB"]);
        assert_eq!(code, 1, "{key}: {text}");
        for n in needles {
            assert!(text.contains(n) && text.contains("config.json"), "{key}: {n:?} not in {text}");
        }
    }
}

#[test]
fn sizes_and_counts_out_of_range_are_refused() {
    let plan = |extra: &[&str]| {
        let mut args = vec!["plan", "--preset", "wan2.1-t2v-14b"];
        args.extend_from_slice(extra);
        wan(&args)
    };
    let (code, text) = plan(&["--vram", "1e30"]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("too large") && !text.contains("unknown unit"), "{text}");
    for negative in [&["--vram=-1GiB"][..], &["--vram", "-1GiB"]] {
        let (code, text) = plan(negative);
        assert_eq!(code, 2, "{text}");
        assert!(text.contains("negative") && !text.contains("no number"), "{text}");
    }
    // A slot count whose area overflows: refused with the largest supported, not an internal error.
    let (code, text) = plan(&["--vram", "12GiB", "--slots", "18446744073709551615"]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("--slots") && text.contains("at most") && !text.contains("internal"), "{text}");
    // --iters 0 would print a median of nothing; refused before any device work.
    let (code, text) = wan(&["bench", "--preset", "wan2.1-t2v-1.3b", "--iters", "0"]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("--iters") && !text.contains("GPU"), "{text}");
    let (code, text) = plan(&["--vram", "12GiB", "--precision", "fp8"]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("fp8") && text.contains("bf16"), "{text}");
}

#[test]
fn forced_slots_that_do_not_fit_name_the_budget_and_what_it_needs() {
    // Between the 2-slot minimum and what 3 leaf slots need: the planner's last error.
    let (code, text) = wan(&["plan", "--preset", "wan2.1-t2v-1.3b", "--frames", "1", "--height", "16", "--width", "16", "--vram", "400MiB"]);
    assert_eq!(code, 0, "{text}");
    let (code, text) = wan(&["plan", "--preset", "wan2.1-t2v-1.3b", "--frames", "1", "--height", "16", "--width", "16", "--vram", "110MiB", "--slots", "3"]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("VRAM budget 110.00 MiB") && text.contains("3 slots"), "{text}");
    assert!(!text.contains("smallest plan for this model needs"), "the 2-slot minimum fits; it is not what is missing: {text}");
}

#[test]
fn plan_prints_a_summary_and_lists_groups_with_verbose() {
    let (code, text) = wan(&["plan", "--preset", "wan2.1-t2v-14b", "--vram", "12GiB"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("offload plan") && !text.contains("group    0"), "{text}");
    assert!(text.lines().count() < 20, "{text}");
    let (code, text) = wan(&["plan", "--preset", "wan2.1-t2v-14b", "--vram", "12GiB", "--verbose"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("group    0") && text.lines().count() > 200, "{text}");
}
