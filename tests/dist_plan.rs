//! Multi-GPU partitioning on the CPU: the parallel plan for the published head counts, the sequence
//! split with padding, the topology from its settings, the NCCL id's text form, and the Ulysses layout
//! steps: run for simulated ranks, attention over the scattered heads must equal attention over the whole
//! sequence for every rank's tokens, bit for bit (the same f64 sums in the same order).

mod common;

use std::ffi::OsString;
use std::time::Duration;

use rand::Rng;
use wanrt::runtime::dist::{topology, ParallelPlan, SeqSplit, Topology, UlyssesLayout};
use wanrt::runtime::gpu::NcclId;
use wanrt::runtime::settings::Settings;

#[test]
fn plans_for_the_published_head_counts() {
    // Wan2.1 14B: 40 heads; 1.3B: 12 heads. Guidance branches (2) go to separate groups when even.
    let p = ParallelPlan::choose(1, 40, 2).unwrap();
    assert_eq!((p.cfg, p.sp, p.ulysses, p.ring), (1, 1, 1, 1));
    let p = ParallelPlan::choose(2, 40, 2).unwrap();
    assert_eq!((p.cfg, p.sp, p.ulysses, p.ring), (2, 1, 1, 1));
    let p = ParallelPlan::choose(4, 40, 2).unwrap();
    assert_eq!((p.cfg, p.sp, p.ulysses, p.ring), (2, 2, 2, 1));
    let p = ParallelPlan::choose(8, 40, 2).unwrap();
    assert_eq!((p.cfg, p.sp, p.ulysses, p.ring), (2, 4, 4, 1));
    let p = ParallelPlan::choose(8, 12, 2).unwrap();
    assert_eq!((p.cfg, p.sp, p.ulysses, p.ring), (2, 4, 4, 1));
    p.check_supported(12, 2).unwrap();
    // Without guidance, 12 heads over 8 ranks: Ulysses 4 × ring 2, refused naming what works.
    let p = ParallelPlan::choose(8, 12, 1).unwrap();
    assert_eq!((p.cfg, p.sp, p.ulysses, p.ring), (1, 8, 4, 2));
    let e = p.check_supported(12, 1).unwrap_err().to_string();
    assert!(e.contains("12 attention heads") && e.contains("ring") && e.contains("[1, 2, 3, 4, 6, 12]"), "{e}");
    // Odd GPU counts keep both branches on every GPU.
    let p = ParallelPlan::choose(3, 12, 2).unwrap();
    assert_eq!((p.cfg, p.sp, p.ulysses, p.ring), (1, 3, 3, 1));
    let p = ParallelPlan::choose(3, 40, 2).unwrap();
    assert_eq!(p.ring, 3);
    assert!(p.check_supported(40, 2).is_err());
    for bad in [(0, 40, 2), (2, 0, 2), (2, 40, 0), (2, 40, 3)] {
        assert!(ParallelPlan::choose(bad.0, bad.1, bad.2).is_err(), "{bad:?}");
    }
}

#[test]
fn roles_are_consecutive_groups() {
    let p = ParallelPlan::choose(8, 40, 2).unwrap();
    let roles: Vec<_> = (0..8).map(|r| p.role(r).unwrap()).collect();
    assert_eq!(roles.iter().map(|r| r.group).collect::<Vec<_>>(), [0, 0, 0, 0, 1, 1, 1, 1]);
    assert_eq!(roles.iter().map(|r| r.sp_rank).collect::<Vec<_>>(), [0, 1, 2, 3, 0, 1, 2, 3]);
    assert_eq!(p.group_ranks(1), 4..8);
    assert!(p.role(8).is_err());
}

#[test]
fn sequence_split_pads_the_last_part() {
    // 480p-81f: 21 × 30 × 52 = 32,760 tokens split evenly over 2, 4 and 8.
    for parts in [1, 2, 4, 8] {
        let s = SeqSplit::new(32_760, parts).unwrap();
        assert_eq!(s.padded(), 32_760);
        assert_eq!((0..parts).map(|p| s.range(p).len()).sum::<usize>(), 32_760);
    }
    let s = SeqSplit::new(10, 4).unwrap();
    assert_eq!((s.per_part, s.padded()), (3, 12));
    assert_eq!((0..4).map(|p| s.range(p)).collect::<Vec<_>>(), [0..3, 3..6, 6..9, 9..10]);
    let s = SeqSplit::new(2, 4).unwrap();
    assert_eq!((0..4).map(|p| s.range(p)).collect::<Vec<_>>(), [0..1, 1..2, 2..2, 2..2]);
    assert!(SeqSplit::new(0, 2).is_err() && SeqSplit::new(3, 0).is_err());
}

fn settings(vars: &[(&str, &str)]) -> Settings {
    let vars: Vec<(String, OsString)> = vars.iter().map(|(k, v)| (k.to_string(), OsString::from(v))).collect();
    Settings::from_lookup(|name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
}

#[test]
fn topology_from_settings() {
    let t = Topology::single_host(4).unwrap();
    assert_eq!((t.world(), t.first_rank()), (4, 0));
    let t = Topology::from_settings(&settings(&[("WANRT_NODES", "2"), ("WANRT_NODE_RANK", "1"), ("WANRT_NCCL_ID_FILE", "/shared/id")]), 8).unwrap();
    assert_eq!((t.world(), t.first_rank()), (16, 8));
    let e = Topology::from_settings(&settings(&[("WANRT_NODES", "2")]), 8).unwrap_err().to_string();
    assert!(e.contains("WANRT_NCCL_ID_FILE"), "{e}");
    let e = Topology::from_settings(&settings(&[("WANRT_NODES", "2"), ("WANRT_NODE_RANK", "2"), ("WANRT_NCCL_ID", "00")]), 8).unwrap_err().to_string();
    assert!(e.contains("WANRT_NODE_RANK=2"), "{e}");
    let e = Topology::from_settings(&settings(&[("WANRT_NODES", "two")]), 8).unwrap_err().to_string();
    assert!(e.contains("\"two\""), "{e}");
    assert!(Topology::single_host(0).is_err());
    // A malformed id in the environment is named.
    let t = Topology::from_settings(&settings(&[("WANRT_NODES", "2"), ("WANRT_NODE_RANK", "1"), ("WANRT_NCCL_ID", "abc")]), 1).unwrap();
    let e = t.nccl_id(|| panic!("host 1 must not make the id"), Duration::from_millis(10)).unwrap_err().to_string();
    assert!(e.contains("WANRT_NCCL_ID") && e.contains("256 hex digits"), "{e}");
}

#[test]
fn nccl_id_round_trips_through_text_and_file() {
    let mut rng = common::rng("nccl_id_round_trips");
    let mut bytes = [0u8; 128];
    rng.fill(&mut bytes[..]);
    let id = NcclId(bytes);
    assert_eq!(NcclId::from_hex(&format!("  {}\n", id.to_hex())).unwrap(), id);
    assert!(NcclId::from_hex(&id.to_hex()[..254]).is_err());
    assert!(NcclId::from_hex(&format!("{}zz", &id.to_hex()[..254])).is_err());
    let dir = std::env::temp_dir().join(format!("wanrt-nccl-id-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("id");
    let _ = std::fs::remove_file(&path);
    // Host 1 waits for the file host 0 writes a little later.
    let reader = {
        let path = path.clone();
        std::thread::spawn(move || topology::read_id(&path, Duration::from_secs(10)))
    };
    std::thread::sleep(Duration::from_millis(120));
    topology::write_id(&path, &id).unwrap();
    assert_eq!(reader.join().unwrap().unwrap(), id);
    let missing = topology::read_id(&dir.join("never"), Duration::from_millis(60)).unwrap_err().to_string();
    assert!(missing.contains("no NCCL id") && missing.contains("never"), "{missing}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Softmax attention of one query row over `keys` keys, f64, in key order.
fn attend(q: &[f64], k: &[f64], v: &[f64], keys: usize, stride: usize, off: usize, d: usize) -> Vec<f64> {
    let scores: Vec<f64> = (0..keys).map(|j| (0..d).map(|x| q[x] * k[j * stride + off + x]).sum::<f64>() / (d as f64).sqrt()).collect();
    let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let p: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
    let z: f64 = p.iter().sum();
    (0..d).map(|x| (0..keys).map(|j| p[j] * v[j * stride + off + x]).sum::<f64>() / z).collect()
}

/// Every rank scatters q, k, v, attends over its heads and all real tokens, gathers back: each rank's
/// output rows equal the single-device attention's rows for its tokens exactly.
#[test]
fn ulysses_steps_reproduce_whole_sequence_attention() {
    let mut rng = common::rng("ulysses_steps");
    for (batch, tokens, heads, d, world) in [(1, 12, 4, 3, 2), (2, 10, 6, 2, 3), (1, 7, 4, 5, 4), (3, 9, 2, 4, 2), (1, 5, 3, 2, 1)] {
        let split = SeqSplit::new(tokens, world).unwrap();
        let sr = split.per_part;
        let lay = UlyssesLayout::new(batch, sr, heads, d, world).unwrap();
        let full: Vec<Vec<f64>> = (0..3).map(|_| (0..batch * tokens * heads * d).map(|_| rng.random::<f64>() - 0.5).collect()).collect();
        // Rank r's share [B, sr, H, d]; padding rows hold NaN, which must never reach a real output.
        let share = |t: &Vec<f64>, r: usize| -> Vec<f64> {
            let mut out = vec![f64::NAN; batch * sr * heads * d];
            for b in 0..batch {
                for (i, tok) in split.range(r).enumerate() {
                    let src = (b * tokens + tok) * heads * d;
                    out[(b * sr + i) * heads * d..][..heads * d].copy_from_slice(&full_row(t, src, heads * d));
                }
            }
            out
        };
        let mut qkv: Vec<Vec<Vec<f64>>> = full.iter().map(|t| (0..world).map(|r| share(t, r)).collect()).collect();
        for t in qkv.iter_mut() {
            lay.run_cpu(&lay.scatter_heads(), t).unwrap();
        }
        let hp = lay.heads_per_rank();
        let padded = split.padded();
        // Attention on each rank: [B, padded, hp, d], keys cut to the real tokens.
        let mut outs: Vec<Vec<f64>> = (0..world)
            .map(|r| {
                let (q, k, v) = (&qkv[0][r], &qkv[1][r], &qkv[2][r]);
                let mut o = vec![f64::NAN; batch * padded * hp * d];
                for b in 0..batch {
                    for i in 0..padded {
                        for h in 0..hp {
                            let row = ((b * padded + i) * hp + h) * d;
                            let base = b * padded * hp * d;
                            let kb = &k[base..];
                            let vb = &v[base..];
                            let res = attend(&q[row..row + d], kb, vb, tokens, hp * d, h * d, d);
                            o[row..row + d].copy_from_slice(&res);
                        }
                    }
                }
                o
            })
            .collect();
        lay.run_cpu(&lay.gather_heads(), &mut outs).unwrap();
        for (r, out) in outs.iter().enumerate() {
            for b in 0..batch {
                for (i, tok) in split.range(r).enumerate() {
                    for h in 0..heads {
                        let q = &full[0][((b * tokens + tok) * heads + h) * d..][..d];
                        let kb = &full[1][b * tokens * heads * d..];
                        let vb = &full[2][b * tokens * heads * d..];
                        let want = attend(q, kb, vb, tokens, heads * d, h * d, d);
                        let got = &out[((b * sr + i) * heads + h) * d..][..d];
                        assert_eq!(got, &want[..], "B{batch} S{tokens} H{heads} w{world}: rank {r} batch {b} token {tok} head {h}");
                    }
                }
            }
        }
    }
    assert!(UlyssesLayout::new(1, 4, 6, 2, 4).is_err(), "6 heads do not split over 4 ranks");
}

fn full_row(t: &[f64], start: usize, len: usize) -> Vec<f64> {
    t[start..start + len].to_vec()
}
