//! UMT5's relative position buckets against transformers' `_relative_position_bucket`, saved with the
//! UMT5 fixture for relative positions −200..=200 (bidirectional, 32 buckets, max distance 128).

mod common;

use wanrt::runtime::ops::relative_bias::{bucket_table, relative_position_bucket};
use wanrt::runtime::weights::SafeTensorsFile;

#[test]
fn buckets_match_transformers() {
    let file = SafeTensorsFile::open(common::fixture("umt5").join("inputs.safetensors")).unwrap();
    let i64s = |name: &str| -> Vec<i64> { file.bytes(name).unwrap().chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect() };
    let (rel, want) = (i64s("relative_position"), i64s("relative_position_bucket"));
    assert_eq!(rel.len(), 401);
    assert!(rel.contains(&-200) && rel.contains(&200) && rel.contains(&0));
    let got: Vec<i64> = rel.iter().map(|&r| relative_position_bucket(r, 32, 128) as i64).collect();
    assert_eq!(got, want);
    // The table the kernel reads: entry j − i + nq − 1.
    let t = bucket_table(5, 7, 32, 128);
    assert_eq!(t.len(), 11);
    assert_eq!(t[4], relative_position_bucket(0, 32, 128) as f32);
    assert_eq!(t[0], relative_position_bucket(-4, 32, 128) as f32);
    assert_eq!(t[10], relative_position_bucket(6, 32, 128) as f32);
}
