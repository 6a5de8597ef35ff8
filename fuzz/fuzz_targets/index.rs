//! Arbitrary bytes as a sharded checkpoint's `*.safetensors.index.json`: parsing must return Ok or
//! Err, never panic, and never map a tensor to a file outside the index's folder. End to end: the
//! index is written beside two small shards and opened as a store, whose listed tensors must read.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use wanrt::runtime::weights::{parse_index, write_safetensors, StorageDType, WeightStore};
use wanrt::DType;

/// A folder with shards `a.safetensors` (x, y) and `b.safetensors` (z), made once per process.
fn folder() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("wanrt-fuzz-index-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp folder");
        let four = [0u8; 16];
        write_safetensors(dir.join("a.safetensors"), &[("x", StorageDType::F32, &[4], &four), ("y", StorageDType::F32, &[2, 2], &four)], &[]).expect("shard a");
        write_safetensors(dir.join("b.safetensors"), &[("z", StorageDType::BF16, &[8], &four)], &[]).expect("shard b");
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let dir = folder();
    let index = dir.join("model.safetensors.index.json");
    if let Ok(map) = parse_index(data, &index) {
        assert!(map.values().all(|p| p.parent() == Some(dir.as_path())), "a shard outside the folder");
    }
    std::fs::write(&index, data).expect("write index");
    let Ok(store) = WeightStore::open(&index) else { return };
    let names: Vec<String> = store.names().map(String::from).collect();
    for name in names {
        let shape = store.info(&name).expect("listed").shape.to_vec();
        store.load(&name, &shape, DType::F32).expect("a listed float tensor reads");
    }
});
