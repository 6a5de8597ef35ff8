//! Deterministic mutation fuzzing of the other loaders, end to end as `wan plan` and `wan forward`
//! run them (tests/weights_fuzz.rs does the safetensors header): seeded mutations of `config.json`
//! (parsed, then units, packing and a plan), of a sharded checkpoint's `index.json` (the store
//! opened over real shards, validated against the model, tensors read) and of the `--inputs` file
//! (checked against the model, converted). Each must give Ok or Err, never a panic, and what is
//! accepted must satisfy the contract the next step relies on. (`fuzz/` has the open-ended
//! cargo-fuzz targets for the same entry points.)

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use rand::{rngs::StdRng, Rng, SeedableRng};
use serde_json::{json, Value};
use wanrt::models::wan::io::{InputFile, IMAGE_TOKENS, TEXT_TOKENS};
use wanrt::models::wan::load::validate;
use wanrt::models::wan::run::{plan_latents, OffloadChoice};
use wanrt::models::wan::WanTransformer3DModel;
use wanrt::models::wan::{Precision, WanConfig};
use wanrt::runtime::offload::Budget;
use wanrt::runtime::weights::{parse_index, serialize_safetensors, StorageDType, WeightStore};

fn root() -> PathBuf {
    std::env::var_os("WANRT_REPO_ROOT").map(PathBuf::from).unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into())
}

fn fixture(kind: &str) -> PathBuf {
    root().join(format!("tests/fixtures/transformer_{kind}"))
}

/// Values that break naive loaders: zero, negative, huge, fractional, wrong types.
fn wild_value(rng: &mut StdRng) -> Value {
    match rng.random_range(0..14) {
        0 => json!(0),
        1 => json!(-1),
        2 => json!(u64::MAX),
        3 => json!(1u64 << rng.random_range(10..63)),
        4 => json!(rng.random_range(0..5000)),
        5 => json!(1.5),
        6 => json!(1e300),
        7 => Value::Null,
        8 => json!("rms_norm_across_heads"),
        9 => json!([1, 2, 2]),
        10 => json!([rng.random_range(0..4), rng.random_range(0..4), rng.random_range(0..4)]),
        11 => json!({}),
        12 => json!(true),
        _ => json!("diffusion_pytorch_model-00001-of-00003.safetensors"),
    }
}

const TOKENS: [&str; 12] = ["{", "}", "[", "]", ",", ":", "\"", "-1", "18446744073709551616", "1e400", "null", "\"../x\""];

/// One mutation of a JSON document: a key's value replaced, a key removed or added (structure), or
/// the text truncated, a byte flipped, a digit rewritten, a token spliced in (syntax).
fn mutate_json(rng: &mut StdRng, text: &mut Vec<u8>, keys: &[&str]) -> String {
    let parsed: Option<Value> = serde_json::from_slice(text).ok();
    match (rng.random_range(0..8), parsed) {
        (0..=2, Some(Value::Object(mut m))) => {
            let key = keys[rng.random_range(0..keys.len())];
            let v = wild_value(rng);
            let what = format!("{key} = {v}");
            m.insert(key.to_string(), v);
            *text = serde_json::to_vec(&m).unwrap();
            what
        }
        (3, Some(Value::Object(mut m))) => {
            let key = keys[rng.random_range(0..keys.len())];
            m.remove(key);
            *text = serde_json::to_vec(&m).unwrap();
            format!("{key} removed")
        }
        (4, _) if !text.is_empty() => {
            let n = rng.random_range(0..text.len());
            text.truncate(n);
            format!("truncated to {n}")
        }
        (5, _) if !text.is_empty() => {
            let i = rng.random_range(0..text.len());
            text[i] ^= 1 << rng.random_range(0..8);
            format!("bit flip at {i}")
        }
        (6, _) if text.iter().any(u8::is_ascii_digit) => {
            let digits: Vec<usize> = (0..text.len()).filter(|&i| text[i].is_ascii_digit()).collect();
            let i = digits[rng.random_range(0..digits.len())];
            text[i] = b'0' + rng.random_range(0..10);
            format!("digit {i} rewritten")
        }
        _ => {
            let tok = TOKENS[rng.random_range(0..TOKENS.len())];
            let i = rng.random_range(0..=text.len());
            text.splice(i..i, tok.bytes());
            format!("{tok} spliced at {i}")
        }
    }
}

/// Runs `f` on `iters` mutants of `seed`, each 1-3 mutations deep; a panic fails with the mutations
/// that led to it. Returns (accepted, refused).
fn fuzz(name: &str, seed: &[u8], iters: usize, rng_seed: u64, mutate: impl Fn(&mut StdRng, &mut Vec<u8>) -> String, f: impl Fn(Vec<u8>) -> bool) -> (usize, usize) {
    assert!(f(seed.to_vec()), "{name}: the seed itself must be accepted");
    let mut rng = StdRng::seed_from_u64(rng_seed);
    let (mut accepted, mut refused) = (0, 0);
    for iter in 0..iters {
        let mut v = seed.to_vec();
        let what: Vec<String> = (0..rng.random_range(1..=3)).map(|_| mutate(&mut rng, &mut v)).collect();
        match catch_unwind(AssertUnwindSafe(|| f(v))) {
            Ok(true) => accepted += 1,
            Ok(false) => refused += 1,
            Err(_) => panic!("{name}: iteration {iter} panicked after: {}", what.join("; ")),
        }
    }
    println!("{name}: accepted {accepted}, refused {refused}");
    (accepted, refused)
}

const CONFIG_KEYS: [&str; 17] = [
    "patch_size",
    "num_attention_heads",
    "attention_head_dim",
    "in_channels",
    "out_channels",
    "text_dim",
    "freq_dim",
    "ffn_dim",
    "num_layers",
    "cross_attn_norm",
    "qk_norm",
    "eps",
    "image_dim",
    "added_kv_proj_dim",
    "rope_max_seq_len",
    "pos_embed_seq_len",
    "_class_name",
];

/// A config as `wan plan --model` uses it: parsed, its units declared and packed, a plan made.
fn exercise_config(bytes: Vec<u8>) -> bool {
    let Ok(cfg) = WanConfig::from_json(&bytes) else { return false };
    assert!(cfg.validate().is_ok());
    let Ok(model) = WanTransformer3DModel::new(&cfg, Precision::Bf16) else { return false };
    assert!(!model.units().is_empty());
    let choice = OffloadChoice { budget: Budget::Bytes(8 << 30), ..OffloadChoice::default() };
    // The smallest and a typical latent grid; either may be refused (budget, RoPE length), never panic.
    for lat in [(1, 2, 2), (21, 60, 104)] {
        let _ = plan_latents(&cfg, Precision::Bf16, 1, lat, &choice, None);
    }
    true
}

#[test]
fn mutated_configs_never_panic() {
    for (kind, seed) in [("t2v", 0xC0F1), ("i2v", 0xC0F2)] {
        let text = std::fs::read(fixture(kind).join("transformer/config.json")).unwrap();
        let (accepted, refused) = fuzz(&format!("config {kind}"), &text, 3000, seed, |r, v| mutate_json(r, v, &CONFIG_KEYS), exercise_config);
        assert!(accepted > 100 && refused > 500, "mutations must reach both outcomes: accepted {accepted}, refused {refused}");
    }
}

/// A folder with the I2V fixture's three shards (hard links or copies) where mutated indexes are written.
fn shard_folder() -> PathBuf {
    let src = fixture("i2v").join("transformer");
    let dir = std::env::temp_dir().join(format!("wanrt-loaders-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for e in std::fs::read_dir(&src).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_str().unwrap().to_string();
        if name.ends_with(".safetensors") || name == "config.json" {
            let dst = dir.join(&name);
            if !dst.exists() && std::fs::hard_link(&p, &dst).is_err() {
                std::fs::copy(&p, &dst).unwrap();
            }
        }
    }
    dir
}

/// An index as `WeightStore::open` and `wan plan` use it: parsed, shards opened, every listed tensor
/// checked against the model, a few tensors read.
fn exercise_index(dir: &Path, cfg: &WanConfig, bytes: Vec<u8>) -> bool {
    let index = dir.join("diffusion_pytorch_model.safetensors.index.json");
    if let Ok(map) = parse_index(&bytes, &index) {
        assert!(map.values().all(|p| p.parent() == Some(dir)), "a shard outside the folder was accepted");
    }
    std::fs::write(&index, &bytes).unwrap();
    let Ok(store) = WeightStore::open(&index) else { return false };
    if let Ok(model) = WanTransformer3DModel::new(cfg, Precision::Bf16) {
        let _ = validate(&store, model.units());
    }
    let names: Vec<String> = store.names().take(3).map(String::from).collect();
    for name in names {
        let shape = store.info(&name).unwrap().shape.to_vec();
        let _ = store.load(&name, &shape, wanrt::DType::BF16);
    }
    true
}

#[test]
fn mutated_indexes_never_panic() {
    let dir = shard_folder();
    let cfg = WanConfig::from_path(&dir).unwrap();
    let text = std::fs::read(fixture("i2v").join("transformer/diffusion_pytorch_model.safetensors.index.json")).unwrap();
    // Keys to target: the index's own and a few tensor names (their shard redirected or removed).
    let keys = ["weight_map", "metadata", "blocks.0.attn1.to_q.weight", "proj_out.bias", "scale_shift_table"];
    let mutate = |r: &mut StdRng, v: &mut Vec<u8>| {
        let Ok(Value::Object(mut m)) = serde_json::from_slice::<Value>(v) else { return mutate_json(r, v, &keys) };
        // Half the structural mutations go inside weight_map, where the tensor -> shard pairs are.
        match m.get_mut("weight_map") {
            Some(inner @ Value::Object(_)) if r.random() => {
                let mut t = serde_json::to_vec(inner).unwrap();
                let what = mutate_json(r, &mut t, &keys);
                *inner = serde_json::from_slice(&t).unwrap_or(Value::Null);
                *v = serde_json::to_vec(&m).unwrap();
                format!("weight_map: {what}")
            }
            _ => mutate_json(r, v, &keys),
        }
    };
    let (accepted, refused) = fuzz("index", &text, 1500, 0x1DE7, mutate, |b| exercise_index(&dir, &cfg, b));
    assert!(accepted > 50 && refused > 100, "accepted {accepted}, refused {refused}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// An inputs file's tensors, regenerated from a description so shapes and dtypes can be mutated
/// while the file stays well formed (byte-level damage is weights_fuzz.rs's business, but a few
/// byte mutations are applied too).
#[derive(Clone, Debug)]
struct Spec(Vec<(String, StorageDType, Vec<usize>)>);

impl Spec {
    fn seed(i2v: bool) -> Spec {
        let mut v = vec![
            ("hidden_states".to_string(), StorageDType::F32, vec![2, if i2v { 36 } else { 16 }, 3, 10, 14]),
            ("timestep".to_string(), StorageDType::I64, vec![2]),
            ("encoder_hidden_states".to_string(), StorageDType::F32, vec![2, TEXT_TOKENS, 64]),
        ];
        if i2v {
            v.push(("encoder_hidden_states_image".to_string(), StorageDType::F32, vec![2, IMAGE_TOKENS, 96]));
        }
        Spec(v)
    }

    fn bytes(&self) -> Option<Vec<u8>> {
        let data: Vec<Vec<u8>> =
            self.0.iter().map(|(_, d, s)| s.iter().try_fold(d.size(), |a, &x| a.checked_mul(x)).filter(|&n| n <= 1 << 22).map(|n| vec![0u8; n])).collect::<Option<_>>()?;
        let entries: Vec<_> = self.0.iter().zip(&data).map(|((n, d, s), b)| (n.as_str(), *d, s.as_slice(), b.as_slice())).collect();
        serialize_safetensors(&entries, &[]).ok()
    }

    fn mutate(&mut self, rng: &mut StdRng) -> String {
        const DTYPES: [StorageDType; 8] =
            [StorageDType::F64, StorageDType::F32, StorageDType::BF16, StorageDType::F16, StorageDType::I64, StorageDType::I32, StorageDType::U8, StorageDType::Bool];
        const DIMS: [usize; 12] = [0, 1, 2, 3, 9, 10, 14, 16, 36, 64, 257, 512];
        const NAMES: [&str; 5] = ["hidden_states", "timestep", "encoder_hidden_states", "encoder_hidden_states_image", "latents"];
        if self.0.is_empty() || rng.random_range(0..8) == 0 {
            let name = NAMES[rng.random_range(0..NAMES.len())].to_string();
            self.0.retain(|t| t.0 != name);
            self.0.push((name.clone(), StorageDType::F32, vec![2]));
            return format!("{name} added");
        }
        let i = rng.random_range(0..self.0.len());
        let t = &mut self.0[i];
        match rng.random_range(0..5) {
            0 => {
                t.1 = DTYPES[rng.random_range(0..DTYPES.len())];
                format!("{} as {}", t.0, t.1)
            }
            1 => {
                t.2.push(DIMS[rng.random_range(0..DIMS.len())]);
                format!("{} gains a dim", t.0)
            }
            2 if !t.2.is_empty() => {
                let j = rng.random_range(0..t.2.len());
                t.2.remove(j);
                format!("{} loses dim {j}", t.0)
            }
            3 if !t.2.is_empty() => {
                let j = rng.random_range(0..t.2.len());
                t.2[j] = DIMS[rng.random_range(0..DIMS.len())];
                format!("{} dim {j} = {}", t.0, t.2[j])
            }
            _ => {
                let name = self.0.remove(i).0;
                format!("{name} removed")
            }
        }
    }
}

/// An inputs file as `wan forward` uses it: checked against the model, then converted; an accepted
/// file's shapes are what the forward and the planner rely on.
fn exercise_inputs(cfg: &WanConfig, bytes: Vec<u8>) -> bool {
    let Ok(f) = InputFile::from_bytes(bytes, "fuzz-inputs.safetensors", cfg) else { return false };
    let (b, (t, h, w)) = (f.batch(), f.latent());
    assert!(b >= 1 && t >= 1 && f.timestep().len() == b && f.timestep().iter().all(|v| v.is_finite()));
    assert!(cfg.grid(t, h, w).is_ok());
    let tensors = f.host_tensors(Precision::Bf16).unwrap();
    for (name, shape, data) in &tensors {
        assert_eq!(data.len(), shape.iter().product::<usize>() * 2, "{name}");
        assert_eq!(shape.first(), Some(&b), "{name}: batch");
        match *name {
            "hidden_states" => assert_eq!(shape.as_slice(), [b, cfg.in_channels, t, h, w]),
            "encoder_hidden_states" => assert!(shape.len() == 3 && shape[2] == cfg.text_dim && (1..=TEXT_TOKENS).contains(&shape[1])),
            _ => assert!(cfg.is_i2v() && shape.len() == 3 && Some(shape[2]) == cfg.image_dim && (1..=IMAGE_TOKENS).contains(&shape[1])),
        }
    }
    assert_eq!(tensors.len(), if cfg.is_i2v() { 3 } else { 2 });
    let choice = OffloadChoice { budget: Budget::Bytes(1 << 30), ..OffloadChoice::default() };
    let _ = plan_latents(cfg, Precision::Bf16, b, (t, h, w), &choice, None);
    true
}

#[test]
fn mutated_inputs_never_panic() {
    for (kind, seed) in [("t2v", 0x1A2), ("i2v", 0x1A3)] {
        let cfg = WanConfig::from_path(&fixture(kind).join("transformer")).unwrap();
        let base = Spec::seed(cfg.is_i2v());
        assert!(exercise_inputs(&cfg, base.bytes().unwrap()), "the seed inputs must be accepted");
        let mut rng = StdRng::seed_from_u64(seed);
        let (mut accepted, mut refused) = (0, 0);
        for iter in 0..3000 {
            let mut spec = base.clone();
            let mut what: Vec<String> = (0..rng.random_range(1..=2)).map(|_| spec.mutate(&mut rng)).collect();
            let Some(mut bytes) = spec.bytes() else { continue };
            // Now and then damage the bytes too: a flipped byte or a cut file.
            if rng.random_range(0..6) == 0 {
                let i = rng.random_range(0..bytes.len());
                if rng.random() {
                    bytes[i] ^= 1 << rng.random_range(0..8);
                } else {
                    bytes.truncate(i);
                }
                what.push(format!("byte {i} damaged"));
            }
            match catch_unwind(AssertUnwindSafe(|| exercise_inputs(&cfg, bytes))) {
                Ok(true) => accepted += 1,
                Ok(false) => refused += 1,
                Err(_) => panic!("inputs {kind}: iteration {iter} panicked after: {}", what.join("; ")),
            }
        }
        println!("inputs {kind}: accepted {accepted}, refused {refused}");
        assert!(accepted > 50 && refused > 500, "accepted {accepted}, refused {refused}");
    }
}
