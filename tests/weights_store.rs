//! WeightStore: single files, model folders, sharded checkpoints behind an index, and the errors for
//! missing, misshapen, mistyped and truncated entries (each names the tensor and the file).

use std::path::{Path, PathBuf};

use half::bf16;
use wanrt::runtime::weights::{write_safetensors, SafeTensorsFile, StorageDType, WeightStore};
use wanrt::DType;

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("wanrt-weights-store-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn ramp(n: usize) -> Vec<f32> {
    (0..n).map(|i| i as f32 * 0.25 - 1.0).collect()
}

fn write_f32(path: &Path, tensors: &[(&str, &[usize])]) {
    let data: Vec<Vec<u8>> = tensors.iter().map(|(_, s)| f32_bytes(&ramp(s.iter().product()))).collect();
    let entries: Vec<_> = tensors.iter().zip(&data).map(|((n, s), d)| (*n, StorageDType::F32, *s, &d[..])).collect();
    write_safetensors(path, &entries, &[]).unwrap();
}

fn assert_has(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "message {msg:?} lacks {p:?}");
    }
}

/// Two shards plus a Diffusers-style index.
fn sharded(dir: &Path, index: &str) -> PathBuf {
    write_f32(&dir.join("diffusion_pytorch_model-00001-of-00002.safetensors"), &[("blocks.0.w", &[4, 3]), ("patch.b", &[4])]);
    write_f32(&dir.join("diffusion_pytorch_model-00002-of-00002.safetensors"), &[("blocks.1.w", &[4, 3]), ("unlisted", &[1])]);
    let path = dir.join("diffusion_pytorch_model.safetensors.index.json");
    std::fs::write(&path, index).unwrap();
    path
}

const INDEX: &str = r#"{"metadata": {"total_size": 112}, "weight_map": {
    "blocks.0.w": "diffusion_pytorch_model-00001-of-00002.safetensors",
    "patch.b": "diffusion_pytorch_model-00001-of-00002.safetensors",
    "blocks.1.w": "diffusion_pytorch_model-00002-of-00002.safetensors"}}"#;

#[test]
fn single_file_by_path_and_by_folder() {
    let dir = tmpdir("single");
    for name in ["diffusion_pytorch_model.safetensors", "model.safetensors", "other.safetensors"] {
        let sub = dir.join(name.replace('.', "_"));
        std::fs::create_dir_all(&sub).unwrap();
        write_f32(&sub.join(name), &[("w", &[2, 3])]);
        for open in [sub.clone(), sub.join(name)] {
            let store = WeightStore::open(&open).unwrap();
            assert_eq!(store.names().collect::<Vec<_>>(), ["w"]);
            let t = store.expect("w", &[2, 3]).unwrap();
            assert_eq!(t.file, sub.join(name));
            assert_eq!(store.load("w", &[2, 3], DType::F32).unwrap(), f32_bytes(&ramp(6)));
        }
    }
}

#[test]
fn sharded_folder_with_index() {
    let dir = tmpdir("sharded");
    let index = sharded(&dir, INDEX);
    for open in [dir.clone(), index.clone()] {
        let store = WeightStore::open(&open).unwrap();
        assert_eq!(store.source(), index);
        assert_eq!(store.names().collect::<Vec<_>>(), ["blocks.0.w", "blocks.1.w", "patch.b"]);
        assert!(store.contains("patch.b") && !store.contains("unlisted"));
        assert_eq!(store.files().len(), 2);
        let t = store.info("blocks.1.w").unwrap();
        assert_eq!(t.file, dir.join("diffusion_pytorch_model-00002-of-00002.safetensors"));
        assert_eq!((t.dtype, t.shape), (StorageDType::F32, &[4usize, 3][..]));
        let bf = store.load("blocks.1.w", &[4, 3], DType::BF16).unwrap();
        let want: Vec<u8> = ramp(12).iter().flat_map(|&x| bf16::from_f32(x).to_le_bytes()).collect();
        assert_eq!(bf, want);
        assert_eq!(store.total_bytes_as(DType::BF16), (12 + 12 + 4) * 2);
        assert_eq!(store.total_bytes_as(DType::F32), (12 + 12 + 4) * 4);
    }
}

#[test]
fn single_file_is_preferred_to_an_index_beside_it() {
    let dir = tmpdir("prefer");
    sharded(&dir, INDEX);
    write_f32(&dir.join("diffusion_pytorch_model.safetensors"), &[("only", &[1])]);
    let store = WeightStore::open(&dir).unwrap();
    assert_eq!(store.names().collect::<Vec<_>>(), ["only"]);
}

#[test]
fn folders_without_a_clear_checkpoint() {
    let dir = tmpdir("ambiguous");
    assert_has(&WeightStore::open(&dir).unwrap_err().to_string(), &[dir.to_str().unwrap(), "no .safetensors"]);
    write_f32(&dir.join("a.safetensors"), &[("w", &[1])]);
    write_f32(&dir.join("b.safetensors"), &[("w", &[1])]);
    assert_has(&WeightStore::open(&dir).unwrap_err().to_string(), &["ambiguous", "a.safetensors", "b.safetensors"]);
    let nope = dir.join("nope");
    assert_has(&WeightStore::open(&nope).unwrap_err().to_string(), &[nope.to_str().unwrap(), "does not exist"]);
}

#[test]
fn missing_tensor_names_tensor_and_checkpoint() {
    let dir = tmpdir("missing");
    let index = sharded(&dir, INDEX);
    let store = WeightStore::open(&dir).unwrap();
    let msg = store.expect("blocks.2.w", &[4, 3]).unwrap_err().to_string();
    assert_has(&msg, &["tensor blocks.2.w", index.to_str().unwrap(), "not found"]);
    assert!(store.load("blocks.2.w", &[4, 3], DType::F32).is_err());
}

#[test]
fn wrong_shape_names_tensor_file_and_both_shapes() {
    let dir = tmpdir("shape");
    sharded(&dir, INDEX);
    let store = WeightStore::open(&dir).unwrap();
    let msg = store.expect("blocks.1.w", &[3, 4]).unwrap_err().to_string();
    assert_has(&msg, &["tensor blocks.1.w", "00002-of-00002.safetensors", "has shape [4, 3], expected [3, 4]"]);
    let msg = store.load("patch.b", &[4, 1], DType::F32).unwrap_err().to_string();
    assert_has(&msg, &["tensor patch.b", "00001-of-00002.safetensors", "expected [4, 1]"]);
}

#[test]
fn wrong_dtype_and_wrong_buffer_size() {
    let dir = tmpdir("dtype");
    let path = dir.join("model.safetensors");
    let ts: Vec<u8> = [999i64, 500].iter().flat_map(|x| x.to_le_bytes()).collect();
    let w = f32_bytes(&[1.0, 2.0]);
    write_safetensors(&path, &[("timesteps", StorageDType::I64, &[2], &ts), ("w", StorageDType::F32, &[2], &w)], &[]).unwrap();
    let store = WeightStore::open(&dir).unwrap();
    let msg = store.load("timesteps", &[2], DType::BF16).unwrap_err().to_string();
    assert_has(&msg, &["tensor timesteps", "model.safetensors", "stored as I64", "bf16"]);
    // Raw bytes stay reachable for non-float tensors.
    assert_eq!(store.info("timesteps").unwrap().data, &ts[..]);
    let mut small = [0u8; 6];
    let msg = store.read_into("w", &[2], DType::F32, &mut small).unwrap_err().to_string();
    assert_has(&msg, &["tensor w", "model.safetensors", "6 bytes", "needs 8"]);
    assert_eq!(store.total_bytes_as(DType::F16), 16 + 4);
}

#[test]
fn index_pointing_to_a_missing_shard() {
    let dir = tmpdir("noshard");
    let index = sharded(&dir, &INDEX.replace("00002-of-00002", "00002-of-00003"));
    let msg = WeightStore::open(&dir).unwrap_err().to_string();
    assert_has(&msg, &[index.to_str().unwrap(), "tensor blocks.1.w", "00002-of-00003.safetensors", "does not exist"]);
}

#[test]
fn index_pointing_to_a_shard_lacking_the_tensor() {
    let dir = tmpdir("lacking");
    let bad = INDEX.replace(r#""patch.b": "diffusion_pytorch_model-00001"#, r#""patch.b": "diffusion_pytorch_model-00002"#);
    sharded(&dir, &bad);
    let msg = WeightStore::open(&dir).unwrap_err().to_string();
    assert_has(&msg, &["tensor patch.b", "00002-of-00002.safetensors", "listed in", "index.json", "not in this shard"]);
}

#[test]
fn corrupt_index_or_shard() {
    let dir = tmpdir("corrupt");
    let index = sharded(&dir, "{\"weight_map\": [}");
    assert_has(&WeightStore::open(&dir).unwrap_err().to_string(), &[index.to_str().unwrap(), "not a valid safetensors index"]);
    std::fs::write(&index, r#"{"weight_map": {"w": "../elsewhere.safetensors"}}"#).unwrap();
    assert_has(&WeightStore::open(&index).unwrap_err().to_string(), &["tensor w", "not a file name inside the folder"]);
    std::fs::write(&index, INDEX).unwrap();
    let shard = dir.join("diffusion_pytorch_model-00001-of-00002.safetensors");
    let len = std::fs::metadata(&shard).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&shard).unwrap().set_len(len - 4).unwrap();
    let msg = WeightStore::open(&dir).unwrap_err().to_string();
    assert_has(&msg, &[shard.to_str().unwrap(), "truncated"]);
}

#[test]
fn a_tensor_in_two_files_is_refused() {
    let dir = tmpdir("dup");
    write_f32(&dir.join("a.safetensors"), &[("w", &[1])]);
    write_f32(&dir.join("b.safetensors"), &[("w", &[1])]);
    let files = vec![SafeTensorsFile::open(dir.join("a.safetensors")).unwrap(), SafeTensorsFile::open(dir.join("b.safetensors")).unwrap()];
    let msg = WeightStore::from_files("ckpt", files).unwrap_err().to_string();
    assert_has(&msg, &["tensor w", "b.safetensors", "also present in", "a.safetensors"]);
}
