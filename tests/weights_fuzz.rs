//! Deterministic mutation fuzzing of the header parser and `SafeTensorsFile`: thousands of seeded
//! truncations, byte flips and header rewrites of a valid file must each give Ok or Err, never a
//! panic, and whatever is accepted must be safe to read and convert. (`fuzz/` has the open-ended
//! cargo-fuzz target for the same entry points.)

use std::panic::{catch_unwind, AssertUnwindSafe};

use rand::{rngs::StdRng, Rng, SeedableRng};
use wanrt::runtime::weights::{parse_header, serialize_safetensors, SafeTensorsFile, StorageDType, WeightStore};
use wanrt::DType;

fn seed_file() -> Vec<u8> {
    let f: Vec<u8> = (0..24).flat_map(|i| (i as f32 * 0.5).to_le_bytes()).collect();
    let b: Vec<u8> = (0..6u16).flat_map(|i| (0x3f80 + i).to_le_bytes()).collect();
    let t: Vec<u8> = [999i64, 1].iter().flat_map(|x| x.to_le_bytes()).collect();
    let d: Vec<u8> = 2.5f64.to_le_bytes().to_vec();
    serialize_safetensors(
        &[
            ("blocks.0.attn1.to_q.weight", StorageDType::F32, &[4, 6], &f),
            ("blocks.0.norm2.bias", StorageDType::BF16, &[2, 3], &b),
            ("timesteps", StorageDType::I64, &[2], &t),
            ("ref", StorageDType::F64, &[], &d),
            ("empty", StorageDType::F16, &[0], &[]),
        ],
        &[("format", "pt")],
    )
    .unwrap()
}

const TOKENS: [&[u8]; 12] =
    [b"{", b"}", b"[", b"]", b",", b":", b"\"", b"-1", b"18446744073709551615", b"\"BF16\"", b"\"__metadata__\"", b"1e400"];

/// One random mutation of `v`, described for the failure message.
fn mutate(rng: &mut StdRng, v: &mut Vec<u8>) -> String {
    // Header-targeted mutations need a header left to target (an earlier one may have cut it).
    let hdr_end = (u64::from_le_bytes(v[..8].try_into().unwrap()).saturating_add(8)).min(v.len() as u64) as usize;
    let has_digit = v[8..hdr_end].iter().any(u8::is_ascii_digit);
    let kind = match rng.random_range(0..7) {
        2 | 5 if hdr_end <= 8 => 0,
        4 if !has_digit => 1,
        k => k,
    };
    match kind {
        0 => {
            let n = rng.random_range(0..v.len());
            v.truncate(n);
            format!("truncate to {n}")
        }
        1 => {
            let k = rng.random_range(1..8);
            for _ in 0..k {
                let i = rng.random_range(0..v.len());
                v[i] ^= 1 << rng.random_range(0..8);
            }
            format!("{k} bit flips anywhere")
        }
        2 => {
            let i = rng.random_range(8..hdr_end);
            v[i] = rng.random();
            format!("header byte {i} replaced")
        }
        3 => {
            let n: u64 = if rng.random() { rng.random() } else { rng.random_range(0..v.len() as u64 + 16) };
            v[..8].copy_from_slice(&n.to_le_bytes());
            format!("header length set to {n}")
        }
        4 => {
            // Swap two digits inside the JSON: shapes and offsets stay well-formed but disagree.
            let digits: Vec<usize> = (8..hdr_end).filter(|&i| v[i].is_ascii_digit()).collect();
            let i = digits[rng.random_range(0..digits.len())];
            v[i] = b'0' + rng.random_range(0..10);
            format!("digit {i} rewritten")
        }
        5 => {
            // Splice a JSON token into the header, keeping the length prefix consistent.
            let tok = TOKENS[rng.random_range(0..TOKENS.len())];
            let i = rng.random_range(8..hdr_end);
            v.splice(i..i, tok.iter().copied());
            let n = hdr_end - 8 + tok.len();
            v[..8].copy_from_slice(&(n as u64).to_le_bytes());
            format!("token {:?} spliced at {i}", String::from_utf8_lossy(tok))
        }
        _ => {
            let k = rng.random_range(1..64);
            v.extend((0..k).map(|_| rng.random::<u8>()));
            format!("{k} junk bytes appended")
        }
    }
}

/// Everything a loader does with an accepted file; must not panic whatever the bytes were.
fn exercise(bytes: Vec<u8>) -> bool {
    let _ = parse_header(&bytes);
    let Ok(file) = SafeTensorsFile::from_bytes(bytes, "fuzz.safetensors") else { return false };
    for t in file.tensors() {
        let data = file.bytes(&t.name).unwrap();
        assert_eq!(data.len(), t.numel() * t.dtype.size(), "{}", t.name);
    }
    let store = WeightStore::from_files("fuzz", vec![file]).unwrap();
    let names: Vec<String> = store.names().map(String::from).collect();
    for name in names {
        let shape = store.info(&name).unwrap().shape.to_vec();
        for dtype in [DType::F32, DType::BF16, DType::F16] {
            let _ = store.load(&name, &shape, dtype);
        }
    }
    let _ = store.total_bytes_as(DType::BF16);
    true
}

#[test]
fn mutated_files_never_panic() {
    let seed = seed_file();
    assert!(exercise(seed.clone()), "the seed file itself must load");
    let mut rng = StdRng::seed_from_u64(0xF022);
    let (mut accepted, mut refused) = (0, 0);
    for iter in 0..5000 {
        let mut v = seed.clone();
        let mut what = Vec::new();
        for _ in 0..rng.random_range(1..=3) {
            if v.len() < 9 {
                break;
            }
            what.push(mutate(&mut rng, &mut v));
        }
        match catch_unwind(AssertUnwindSafe(|| exercise(v))) {
            Ok(true) => accepted += 1,
            Ok(false) => refused += 1,
            Err(_) => panic!("iteration {iter} panicked after: {}", what.join("; ")),
        }
    }
    println!("accepted {accepted}, refused {refused}");
    // Both outcomes must occur, or the mutations are not reaching the validation logic.
    assert!(accepted > 100 && refused > 1000, "accepted {accepted}, refused {refused}");
}
