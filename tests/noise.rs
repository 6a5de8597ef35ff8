//! Seeded noise equals torch's bit for bit: `TorchGenerator::new(seed).randn(shape)` against
//! `torch.randn(shape, generator=torch.Generator().manual_seed(seed))` as saved by the fixture scripts:
//! the pipeline fixtures' initial latents (tools/fixtures/gen_pipeline.py, seeds in tinyconfigs.py) and,
//! when present, tests/fixtures/noise/randn.safetensors (tools/fixtures/gen_randn.py: both of torch's
//! paths, tails of 1..15, seeds over 2^32, published latent shapes, a generator drawn three times). CPU only.

use std::path::PathBuf;

use wanrt::models::pipeline::TorchGenerator;
use wanrt::runtime::weights::{SafeTensorsFile, StorageDType};

fn root() -> PathBuf {
    std::env::var_os("WANRT_REPO_ROOT").map(PathBuf::from).unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into())
}

/// An F32 or F64 tensor as (shape, values as f64, the F32 bit patterns (empty for F64)).
fn read(file: &SafeTensorsFile, name: &str) -> (Vec<usize>, Vec<f64>, Vec<u32>) {
    let info = file.info(name).unwrap_or_else(|| panic!("{}: no tensor {name}", file.path().display()));
    let bytes = file.bytes(name).unwrap();
    match info.dtype {
        StorageDType::F32 => {
            let bits: Vec<u32> = bytes.chunks_exact(4).map(|b| u32::from_le_bytes(b.try_into().unwrap())).collect();
            (info.shape.clone(), bits.iter().map(|&b| f32::from_bits(b) as f64).collect(), bits)
        }
        StorageDType::F64 => (info.shape.clone(), bytes.chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().unwrap())).collect(), vec![]),
        d => panic!("{name}: unexpected dtype {d:?}"),
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// First index where two bit patterns differ, for a readable failure.
fn assert_bits_eq(got: &[u32], want: &[u32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    if let Some(i) = got.iter().zip(want).position(|(a, b)| a != b) {
        let n = got.iter().zip(want).filter(|(a, b)| a != b).count();
        panic!("{what}: {n} of {} values differ; first at {i}: got {} want {}", got.len(), f32::from_bits(got[i]), f32::from_bits(want[i]));
    }
}

#[test]
fn pipeline_fixture_latents_are_reproduced() {
    // tinyconfigs.SEED: latents_t2v=6006, latents_i2v=7007.
    for (kind, seed) in [("t2v", 6006u64), ("i2v", 7007)] {
        let path = root().join(format!("tests/fixtures/pipeline_{kind}/inputs.safetensors"));
        let file = SafeTensorsFile::open(&path).unwrap();
        let (shape, _, want) = read(&file, "latents");
        let got = TorchGenerator::new(seed).randn(&shape);
        assert_bits_eq(&bits(&got), &want, &format!("{kind} latents {shape:?} seed {seed}"));
    }
}

/// tests/fixtures/noise/randn.safetensors, or `None` with a printed reason while it is absent.
fn randn_fixture() -> Option<SafeTensorsFile> {
    let path = root().join("tests/fixtures/noise/randn.safetensors");
    if !path.is_file() {
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "skipping: {} is absent (made by tools/fixtures/gen_randn.py)", path.display());
        return None;
    }
    Some(SafeTensorsFile::open(&path).unwrap())
}

/// `randn.{seed}.{AxBxC}` → (seed, shape).
fn parse_key(key: &str) -> (u64, Vec<usize>) {
    let mut parts = key.splitn(3, '.');
    assert_eq!(parts.next(), Some("randn"));
    let seed = parts.next().unwrap().parse().unwrap();
    let shape = parts.next().unwrap().split('.').next().unwrap().split('x').map(|d| d.parse().unwrap()).collect();
    (seed, shape)
}

#[test]
fn randn_fixture_is_reproduced() {
    let Some(file) = randn_fixture() else { return };
    let names: Vec<String> = file.names().map(str::to_string).collect();
    let mut checked = 0;
    for name in names.iter().filter(|n| n.starts_with("randn.")) {
        if name.ends_with(".tail") || name.ends_with(".sums") {
            continue;
        }
        let (seed, shape) = parse_key(name);
        let got = TorchGenerator::new(seed).randn(&shape);
        if let Some(base) = name.strip_suffix(".head") {
            let (_, _, head) = read(&file, name);
            let (_, _, tail) = read(&file, &format!("{base}.tail"));
            assert_bits_eq(&bits(&got[..head.len()]), &head, name);
            assert_bits_eq(&bits(&got[got.len() - tail.len()..]), &tail, &format!("{base}.tail"));
            // Sums in f64 (torch sums pairwise, so they agree to rounding, not bit for bit).
            let (_, sums, _) = read(&file, &format!("{base}.sums"));
            let x: Vec<f64> = got.iter().map(|&v| v as f64).collect();
            let ours = [x.iter().sum::<f64>(), x.iter().map(|v| v.abs()).sum(), x.iter().map(|v| v * v).sum()];
            for (k, (a, b)) in ours.iter().zip(&sums).enumerate() {
                assert!((a - b).abs() <= 1e-9 * b.abs().max(x.len() as f64), "{base}.sums[{k}]: ours {a} torch {b}");
            }
        } else {
            let (want_shape, _, want) = read(&file, name);
            assert_eq!(want_shape, shape, "{name}");
            assert_bits_eq(&bits(&got), &want, name);
        }
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} randn tensors in the fixture");
    // One generator drawn three times: the scalar path's cached value and the engine carry over.
    let mut g = TorchGenerator::new(5);
    for (key, n) in [("sequence.5.first.3", 3), ("sequence.5.second.20", 20), ("sequence.5.third.3", 3)] {
        let (_, _, want) = read(&file, key);
        assert_bits_eq(&bits(&g.randn(&[n])), &want, key);
    }
}
