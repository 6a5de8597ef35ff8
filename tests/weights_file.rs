//! SafeTensorsFile and the header parser: round trips, and every malformed header or truncated file
//! is an error naming the file and, where one is at fault, the tensor.

use std::path::PathBuf;

use wanrt::runtime::weights::{parse_header, serialize_safetensors, write_safetensors, SafeTensorsFile, StorageDType};

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("wanrt-weights-file-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A file from a literal header and data section (the header is written unpadded, as given).
fn raw(header: &str, data: &[u8]) -> Vec<u8> {
    let mut v = (header.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(header.as_bytes());
    v.extend_from_slice(data);
    v
}

fn open_err(bytes: Vec<u8>) -> String {
    let e = SafeTensorsFile::from_bytes(bytes, "/ckpt/bad.safetensors").expect_err("expected an error");
    let msg = e.to_string();
    assert!(msg.contains("/ckpt/bad.safetensors"), "message does not name the file: {msg}");
    msg
}

fn assert_has(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "message {msg:?} lacks {p:?}");
    }
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[test]
fn round_trip_every_storage_dtype_through_a_mapped_file() {
    let dir = tmpdir("roundtrip");
    let path = dir.join("all.safetensors");
    let f = f32_bytes(&[1.0, -2.5, 3.25, f32::INFINITY, 0.0, 7.0]);
    let d: Vec<u8> = [1.5f64, -0.1].iter().flat_map(|x| x.to_le_bytes()).collect();
    let bf: Vec<u8> = [0x3f80u16, 0xc000, 0x7fc0].iter().flat_map(|x| x.to_le_bytes()).collect();
    let h: Vec<u8> = [0x3c00u16, 0xbc00].iter().flat_map(|x| x.to_le_bytes()).collect();
    let i64s: Vec<u8> = [999i64, -1].iter().flat_map(|x| x.to_le_bytes()).collect();
    let i32s: Vec<u8> = 7i32.to_le_bytes().to_vec();
    let u8s = [1u8, 2, 3];
    let bools = [1u8, 0];
    let tensors = [
        ("w.f32", StorageDType::F32, &[2usize, 3][..], &f[..]),
        ("ref.f64", StorageDType::F64, &[2][..], &d[..]),
        ("b", StorageDType::BF16, &[3][..], &bf[..]),
        ("a.f16", StorageDType::F16, &[1, 2][..], &h[..]),
        ("timesteps", StorageDType::I64, &[2][..], &i64s[..]),
        ("scalar", StorageDType::I32, &[][..], &i32s[..]),
        ("bytes", StorageDType::U8, &[3][..], &u8s[..]),
        ("mask", StorageDType::Bool, &[2][..], &bools[..]),
        ("empty", StorageDType::F32, &[0, 4][..], &[][..]),
    ];
    write_safetensors(&path, &tensors, &[("format", "pt"), ("source", "test")]).unwrap();
    let file = SafeTensorsFile::open(&path).unwrap();
    let names: Vec<&str> = file.names().collect();
    let mut sorted: Vec<&str> = tensors.iter().map(|t| t.0).collect();
    sorted.sort();
    assert_eq!(names, sorted);
    for (name, dtype, shape, data) in &tensors {
        let info = file.info(name).unwrap();
        assert_eq!((info.dtype, info.shape.as_slice()), (*dtype, *shape), "{name}");
        assert_eq!(file.bytes(name).unwrap(), *data, "{name}");
    }
    assert_eq!(file.metadata().get("format").map(String::as_str), Some("pt"));
    assert_eq!(file.metadata().len(), 2);
    // Header padded so the data section starts 8-byte aligned; no temp file left behind.
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(u64::from_le_bytes(bytes[..8].try_into().unwrap()) % 8, 0);
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
    // The pure parser agrees with the file.
    let header = parse_header(&bytes).unwrap();
    assert_eq!(header.tensors, file.tensors());
}

#[test]
fn hand_written_header_with_gaps_and_extra_fields() {
    // A hand-written header with gaps between tensors and unknown fields is accepted as other readers do.
    let hdr = r#"{"x":{"dtype":"F32","shape":[1],"data_offsets":[8,12],"extra":1},"y":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}"#;
    let file = SafeTensorsFile::from_bytes(raw(hdr, &[5, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0x80, 0x3f]), "mem").unwrap();
    assert_eq!(file.bytes("y").unwrap(), &[5, 6]);
    assert_eq!(file.bytes("x").unwrap(), &1.0f32.to_le_bytes());
}

#[test]
fn too_short_for_the_length_prefix() {
    assert_has(&open_err(vec![1, 2, 3]), &["too short"]);
    assert_has(&open_err(vec![]), &["too short"]);
}

#[test]
fn header_length_past_end_of_file() {
    let mut bytes = raw(r#"{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}"#, &[9]);
    bytes[..8].copy_from_slice(&1000u64.to_le_bytes());
    assert_has(&open_err(bytes), &["header length 1000 runs past the end"]);
    let mut huge = vec![0u8; 16];
    huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    assert_has(&open_err(huge), &["exceeds"]);
}

#[test]
fn header_json_garbage() {
    assert_has(&open_err(raw("{\"a\": {\"dtype\": ", &[])), &["header JSON is invalid"]);
    assert_has(&open_err(raw("\u{1}\u{2}garbage", &[])), &["not a JSON object"]);
    assert_has(&open_err(raw("[1, 2]", &[])), &["not a JSON object"]);
    assert_has(&open_err(raw("{\"a\": 3}", &[])), &["tensor a", "bad header entry"]);
    let missing_shape = r#"{"w":{"dtype":"F32","data_offsets":[0,4]}}"#;
    assert_has(&open_err(raw(missing_shape, &[0; 4])), &["tensor w", "shape"]);
    let negative = r#"{"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"#;
    assert_has(&open_err(raw(negative, &[0; 4])), &["tensor w"]);
    let bad_meta = r#"{"__metadata__":{"n":1}}"#;
    assert_has(&open_err(raw(bad_meta, &[])), &["__metadata__", "strings"]);
    let two_meta = r#"{"__metadata__":{},"__metadata__":{}}"#;
    assert_has(&open_err(raw(two_meta, &[])), &["two __metadata__"]);
    SafeTensorsFile::from_bytes(raw(r#"{"__metadata__":null}"#, &[]), "mem").unwrap();
}

#[test]
fn unsupported_dtype_names_tensor_and_dtype() {
    let hdr = r#"{"q":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}}"#;
    assert_has(&open_err(raw(hdr, &[0, 0])), &["tensor q", "unsupported dtype", "F8_E4M3"]);
}

#[test]
fn offsets_out_of_range_reversed_or_wrong_size() {
    let out = r#"{"big":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#;
    assert_has(&open_err(raw(out, &[0; 8])), &["tensor big", "past the end of the data"]);
    let rev = r#"{"r":{"dtype":"U8","shape":[0],"data_offsets":[4,0]}}"#;
    assert_has(&open_err(raw(rev, &[0; 8])), &["tensor r", "reversed"]);
    let size = r#"{"s":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}}"#;
    assert_has(&open_err(raw(size, &[0; 16])), &["tensor s", "span 12 bytes", "needs 16"]);
    let overflow = r#"{"o":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,8]}}"#;
    assert_has(&open_err(raw(overflow, &[0; 8])), &["tensor o", "overflows"]);
}

#[test]
fn overlapping_offsets_name_both_tensors() {
    let hdr = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#;
    assert_has(&open_err(raw(hdr, &[0; 8])), &["tensor b", "overlaps tensor a"]);
    // An empty tensor may sit anywhere.
    let empty = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"e":{"dtype":"F32","shape":[0],"data_offsets":[4,4]}}"#;
    SafeTensorsFile::from_bytes(raw(empty, &[0; 8]), "mem").unwrap();
}

#[test]
fn duplicate_names_are_refused() {
    let hdr = r#"{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}"#;
    assert_has(&open_err(raw(hdr, &[0; 2])), &["tensor a", "twice"]);
}

#[test]
fn truncated_file_names_the_tensor_cut_off() {
    let a = f32_bytes(&[1.0; 4]);
    let z = f32_bytes(&[2.0; 4]);
    let full = serialize_safetensors(&[("a", StorageDType::F32, &[4], &a), ("z", StorageDType::F32, &[4], &z)], &[]).unwrap();
    let msg = open_err(full[..full.len() - 3].to_vec());
    assert_has(&msg, &["tensor z", "truncated"]);
    // Cut inside the header: the header length no longer fits.
    assert_has(&open_err(full[..20].to_vec()), &["runs past the end"]);
}

#[test]
fn truncated_file_on_disk_is_named() {
    let dir = tmpdir("trunc");
    let path = dir.join("cut.safetensors");
    let a = f32_bytes(&[1.0; 16]);
    write_safetensors(&path, &[("blocks.0.w", StorageDType::F32, &[16], &a)], &[]).unwrap();
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(len - 1).unwrap();
    let msg = SafeTensorsFile::open(&path).unwrap_err().to_string();
    assert_has(&msg, &[path.to_str().unwrap(), "tensor blocks.0.w", "truncated"]);
}

#[test]
fn missing_tensor_and_missing_file() {
    let a = f32_bytes(&[1.0]);
    let bytes = serialize_safetensors(&[("a", StorageDType::F32, &[1], &a)], &[]).unwrap();
    let file = SafeTensorsFile::from_bytes(bytes, "/x/m.safetensors").unwrap();
    assert!(file.info("b").is_none());
    assert_has(&file.bytes("b").unwrap_err().to_string(), &["/x/m.safetensors", "tensor b", "not in this file"]);
    let dir = tmpdir("missing");
    let nope = dir.join("nope.safetensors");
    assert_has(&SafeTensorsFile::open(&nope).unwrap_err().to_string(), &[nope.to_str().unwrap()]);
    assert_has(&SafeTensorsFile::open(&dir).unwrap_err().to_string(), &[dir.to_str().unwrap(), "not a regular file"]);
}

#[test]
fn writer_refuses_bad_entries() {
    let dir = tmpdir("writer");
    let path = dir.join("out.safetensors");
    let four = [0u8; 4];
    let err = |t: &[(&str, StorageDType, &[usize], &[u8])]| write_safetensors(&path, t, &[]).unwrap_err().to_string();
    assert_has(&err(&[("w", StorageDType::F32, &[2], &four)]), &["tensor w", "4 data bytes", "needs 8"]);
    assert_has(&err(&[("w", StorageDType::U8, &[4], &four), ("w", StorageDType::U8, &[4], &four)]), &["tensor w", "twice"]);
    assert_has(&err(&[("__metadata__", StorageDType::U8, &[4], &four)]), &["reserved"]);
    assert!(!path.exists(), "a refused write must leave no file");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "no temp file left behind");
}
