//! Arbitrary bytes as a whole safetensors file: parsing must return Ok or Err, never panic, and an
//! accepted file's tensors must be readable and convertible.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wanrt::runtime::weights::{parse_header, SafeTensorsFile, WeightStore};
use wanrt::DType;

fuzz_target!(|data: &[u8]| {
    let parsed = parse_header(data);
    let Ok(file) = SafeTensorsFile::from_bytes(data.to_vec(), "fuzz") else {
        assert!(parsed.is_err(), "parse_header accepted what SafeTensorsFile refused");
        return;
    };
    for t in file.tensors() {
        let bytes = file.bytes(&t.name).expect("listed tensor");
        assert_eq!(bytes.len(), t.numel() * t.dtype.size());
    }
    let Ok(store) = WeightStore::from_files("fuzz", vec![file]) else { return };
    let names: Vec<String> = store.names().map(String::from).collect();
    for name in names {
        let Ok(t) = store.info(&name) else { continue };
        let shape = t.shape.to_vec();
        // Bound the work per input: huge zero-filled tensors are valid but slow to convert.
        if t.numel() <= 1 << 16 {
            let _ = store.load(&name, &shape, DType::BF16);
        }
    }
});
