//! Model folders as users have them: Diffusers roots (model_index.json naming WanPipeline or
//! WanImageToVideoPipeline, every component folder present) and hub ids in a Hugging Face cache laid
//! out as huggingface_hub writes it (`models--owner--name/refs/main`, `snapshots/<hash>/`), built in a
//! temp folder from the pipeline fixtures' model_index.json and transformer configs. No network. CPU only.

use std::path::{Path, PathBuf};

use wanrt::models::pipeline::{GenerateRequest, ModelDefaults, ModelFolder, PipelineKind, Tier};

fn root() -> PathBuf {
    std::env::var_os("WANRT_REPO_ROOT").map(PathBuf::from).unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into())
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("wanrt-model-folder-{}", std::process::id())).join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A Diffusers root at `dir` for the fixture pipeline `kind` (t2v or i2v): its model_index.json, its
/// transformer config and an empty folder per other component, less `skip`.
fn make_root(dir: &Path, kind: &str, skip: &[&str]) {
    let fixture = root().join(format!("tests/fixtures/pipeline_{kind}"));
    std::fs::create_dir_all(dir).unwrap();
    std::fs::copy(fixture.join("model_index.json"), dir.join("model_index.json")).unwrap();
    let pk = if kind == "t2v" { PipelineKind::T2V } else { PipelineKind::I2V };
    for c in pk.components().iter().filter(|c| !skip.contains(c)) {
        std::fs::create_dir_all(dir.join(c)).unwrap();
    }
    if !skip.contains(&"transformer") {
        std::fs::copy(fixture.join("transformer/config.json"), dir.join("transformer/config.json")).unwrap();
    }
}

const HASH: &str = "0123456789abcdef0123456789abcdef01234567";

/// A hub cache holding `id` at commit HASH, with refs/main pointing at it.
fn make_cache(cache: &Path, id: &str, kind: &str) {
    let repo = cache.join(format!("models--{}", id.replace('/', "--")));
    make_root(&repo.join("snapshots").join(HASH), kind, &[]);
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), HASH).unwrap();
}

#[test]
fn diffusers_roots() {
    let t2v = tmp("roots").join("Wan2.1-T2V-1.3B-Diffusers");
    make_root(&t2v, "t2v", &[]);
    let f = ModelFolder::resolve(t2v.to_str().unwrap(), None, None).unwrap();
    assert_eq!(f.kind(), PipelineKind::T2V);
    assert_eq!(f.component("vae").unwrap(), t2v.join("vae"));
    assert!(f.component("image_encoder").unwrap_err().to_string().contains("no image_encoder"));
    let d = ModelDefaults::of(&f).unwrap();
    assert_eq!(d, ModelDefaults { kind: PipelineKind::T2V, tier: Tier::P480 });
    assert_eq!(GenerateRequest::new("p", d).height, 480);

    let i2v = tmp("roots720").join("Wan2.1-I2V-14B-720P-Diffusers");
    make_root(&i2v, "i2v", &[]);
    let f = ModelFolder::open(&i2v).unwrap();
    assert_eq!(f.kind(), PipelineKind::I2V);
    assert_eq!(ModelDefaults::of(&f).unwrap().tier, Tier::P720);
}

#[test]
fn a_missing_component_is_named() {
    for (kind, missing) in [("t2v", "text_encoder"), ("t2v", "vae"), ("i2v", "image_encoder"), ("i2v", "image_processor")] {
        let dir = tmp(&format!("missing-{kind}-{missing}"));
        make_root(&dir, kind, &[missing]);
        let e = ModelFolder::open(&dir).unwrap_err().to_string();
        assert!(e.contains(missing) && e.contains("missing"), "{kind} without {missing}: {e}");
    }
    // The pipeline fixtures themselves hold only transformer/ and scheduler/.
    let e = ModelFolder::open(&root().join("tests/fixtures/pipeline_t2v")).unwrap_err().to_string();
    assert!(e.contains("text_encoder"), "{e}");
}

#[test]
fn bad_folders() {
    let dir = tmp("bad");
    let e = ModelFolder::open(&dir).unwrap_err().to_string();
    assert!(e.contains("no model_index.json"), "{e}");
    // A component folder given for the root.
    std::fs::write(dir.join("config.json"), "{}").unwrap();
    assert!(ModelFolder::open(&dir).unwrap_err().to_string().contains("one component's folder"));
    std::fs::write(dir.join("model_index.json"), r#"{"_class_name": "WanVACEPipeline"}"#).unwrap();
    assert!(ModelFolder::open(&dir).unwrap_err().to_string().contains("WanVACEPipeline is not a Wan2.1 pipeline"));
    std::fs::write(dir.join("model_index.json"), r#"{"_class_name": "WanPipeline", "vae": ["diffusers", "AutoencoderKLWan"]}"#).unwrap();
    let e = ModelFolder::open(&dir).unwrap_err().to_string();
    assert!(e.contains("does not list") && e.contains("scheduler"), "{e}");
    std::fs::write(dir.join("model_index.json"), "{not json").unwrap();
    assert!(ModelFolder::open(&dir).unwrap_err().to_string().contains("invalid JSON"));
    // model_index.json and the transformer disagree.
    let mixed = tmp("mixed");
    make_root(&mixed, "t2v", &[]);
    std::fs::copy(root().join("tests/fixtures/pipeline_i2v/transformer/config.json"), mixed.join("transformer/config.json")).unwrap();
    let e = ModelDefaults::of(&ModelFolder::open(&mixed).unwrap()).unwrap_err().to_string();
    assert!(e.contains("WanPipeline") && e.contains("I2V transformer"), "{e}");
    // Neither a folder nor a hub id.
    assert!(ModelFolder::resolve("/no/such/model", None, None).unwrap_err().to_string().contains("no such folder"));
}

#[test]
fn hub_ids_resolve_in_the_cache() {
    let cache = tmp("hub");
    make_cache(&cache, "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers", "i2v");
    let snap = cache.join("models--Wan-AI--Wan2.1-I2V-14B-480P-Diffusers/snapshots").join(HASH);
    let f = ModelFolder::resolve("Wan-AI/Wan2.1-I2V-14B-480P-Diffusers", None, Some(&cache)).unwrap();
    assert_eq!(f.root(), snap);
    assert_eq!(f.hub_id(), Some("Wan-AI/Wan2.1-I2V-14B-480P-Diffusers"));
    assert_eq!(ModelDefaults::of(&f).unwrap(), ModelDefaults { kind: PipelineKind::I2V, tier: Tier::P480 });
    // A commit hash and a branch with a ref.
    assert_eq!(ModelFolder::resolve("Wan-AI/Wan2.1-I2V-14B-480P-Diffusers", Some(HASH), Some(&cache)).unwrap().root(), snap);
    let refs = cache.join("models--Wan-AI--Wan2.1-I2V-14B-480P-Diffusers/refs");
    std::fs::write(refs.join("v1"), format!("{HASH}\n")).unwrap();
    assert_eq!(ModelFolder::resolve("Wan-AI/Wan2.1-I2V-14B-480P-Diffusers", Some("v1"), Some(&cache)).unwrap().root(), snap);
    // What is not there says how to get it.
    let e = ModelFolder::resolve("Wan-AI/Wan2.1-T2V-14B-Diffusers", None, Some(&cache)).unwrap_err().to_string();
    assert!(e.contains("not in the Hugging Face cache") && e.contains("huggingface-cli download Wan-AI/Wan2.1-T2V-14B-Diffusers"), "{e}");
    let e = ModelFolder::resolve("Wan-AI/Wan2.1-I2V-14B-480P-Diffusers", Some("dev"), Some(&cache)).unwrap_err().to_string();
    assert!(e.contains("no revision dev") && e.contains("--revision dev"), "{e}");
    let other = "f".repeat(40);
    let e = ModelFolder::resolve("Wan-AI/Wan2.1-I2V-14B-480P-Diffusers", Some(&other), Some(&cache)).unwrap_err().to_string();
    assert!(e.contains(&other), "{e}");
    let e = ModelFolder::resolve("Wan-AI/Wan2.1-I2V-14B-480P-Diffusers", Some("../../etc"), Some(&cache)).unwrap_err().to_string();
    assert!(e.contains("not a branch"), "{e}");
    // No cache known at all.
    let e = ModelFolder::resolve("Wan-AI/Wan2.1-T2V-14B-Diffusers", None, None).unwrap_err().to_string();
    assert!(e.contains("HF_HUB_CACHE"), "{e}");
    // A revision makes no sense for a local folder.
    let e = ModelFolder::resolve(snap.to_str().unwrap(), Some("main"), Some(&cache)).unwrap_err().to_string();
    assert!(e.contains("--revision"), "{e}");
}
