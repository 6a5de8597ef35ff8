//! The tensor-core attention kernels compile to the instructions they exist for: the sm_90a kernel's
//! CUBIN contains HGMMA (warpgroup MMA) and UTMALDG (bulk tensor copies), the sm_80 kernel's HMMA and
//! LDGSTS (cp.async). No GPU: NVRTC compiles, `cuobjdump --dump-sass` disassembles.
//!
//! cuobjdump comes from `WANRT_CUOBJDUMP`, else `PATH`, else /usr/local/cuda/bin, and needs nvdisasm on
//! `PATH`. `.ci/run` installs both (the `nvidia-cuda-cuobjdump` and `nvidia-cuda-nvdisasm` wheels) and
//! sets `WANRT_REQUIRE_CUOBJDUMP=1`, which turns a missing cuobjdump into a failure; elsewhere the test
//! skips with a printed reason.

use std::path::PathBuf;
use std::process::Command;

use wanrt::runtime::gpu;
use wanrt::runtime::registry;

fn cuobjdump() -> Option<PathBuf> {
    let candidates = std::env::var_os("WANRT_CUOBJDUMP")
        .map(PathBuf::from)
        .into_iter()
        .chain(std::env::var_os("PATH").into_iter().flat_map(|p| std::env::split_paths(&p).map(|d| d.join("cuobjdump")).collect::<Vec<_>>()))
        .chain([PathBuf::from("/usr/local/cuda/bin/cuobjdump")]);
    candidates.into_iter().find(|c| Command::new(c).arg("--version").output().is_ok_and(|o| o.status.success()))
}

/// SASS of one kernel file compiled for `target`.
fn sass(tool: &PathBuf, name: &str, target: &str) -> String {
    let out = registry::compile(name, target).unwrap_or_else(|e| panic!("{name} for {target}: {e}"));
    assert!(out.is_cubin, "{name} for {target}: expected a CUBIN");
    let path = std::env::temp_dir().join(format!("wanrt-sass-{}-{name}-{target}.cubin", std::process::id()));
    std::fs::write(&path, &out.image).unwrap();
    let res = Command::new(tool).arg("--dump-sass").arg(&path).output().unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(res.status.success(), "cuobjdump {name} {target}: {}", String::from_utf8_lossy(&res.stderr));
    String::from_utf8_lossy(&res.stdout).into_owned()
}

/// Instruction counts per kernel entry: `(function name, count of each mnemonic)`.
fn counts(sass: &str, mnemonics: &[&str]) -> Vec<(String, Vec<usize>)> {
    let mut out: Vec<(String, Vec<usize>)> = Vec::new();
    for line in sass.lines() {
        if let Some(f) = line.trim().strip_prefix("Function : ") {
            out.push((f.to_string(), vec![0; mnemonics.len()]));
        } else if let Some((_, c)) = out.last_mut() {
            // An instruction line reads `/*0a40*/  HGMMA.64x128x16.F32.BF16 R24, gdesc[UR4], ... ;`.
            let Some(body) = line.split("*/").nth(1) else { continue };
            // A predicate (`@P0`, `@!P1`) may precede the mnemonic.
            let op = body.split_whitespace().find(|w| !w.starts_with('@')).unwrap_or("");
            for (i, m) in mnemonics.iter().enumerate() {
                if op.split('.').next() == Some(*m) {
                    c[i] += 1;
                }
            }
        }
    }
    out
}

fn require() -> Option<PathBuf> {
    let required = std::env::var("WANRT_REQUIRE_CUOBJDUMP").is_ok_and(|v| v == "1");
    gpu::nvrtc_version().expect("libnvrtc must be on the library path (see README)");
    match cuobjdump() {
        Some(t) => Some(t),
        None if required => panic!("WANRT_REQUIRE_CUOBJDUMP=1 but no cuobjdump found (set WANRT_CUOBJDUMP)"),
        None => {
            eprintln!("skipped: no cuobjdump (install the nvidia-cuda-cuobjdump wheel or set WANRT_CUOBJDUMP)");
            None
        }
    }
}

#[test]
fn hopper_attention_uses_wgmma_and_tma() {
    let Some(tool) = require() else { return };
    let text = sass(&tool, "attention_wgmma", "sm_90a");
    let kernels: Vec<_> = counts(&text, &["HGMMA", "UTMALDG", "SYNCS"]).into_iter().filter(|(f, _)| f.starts_with("attn_fwd_wgmma")).collect();
    assert!(!kernels.is_empty(), "no attn_fwd_wgmma entry in the SASS");
    for (f, c) in &kernels {
        eprintln!("{f}: HGMMA {} UTMALDG {} SYNCS {}", c[0], c[1], c[2]);
        assert!(c[0] > 0, "{f}: no HGMMA instruction");
        assert!(c[1] > 0, "{f}: no UTMALDG (bulk tensor copy) instruction");
        assert!(c[2] > 0, "{f}: no SYNCS (mbarrier) instruction");
    }
}

#[test]
fn ampere_attention_uses_mma_and_cp_async() {
    let Some(tool) = require() else { return };
    let text = sass(&tool, "attention_mma", "sm_80");
    let kernels: Vec<_> = counts(&text, &["HMMA", "LDGSTS"]).into_iter().filter(|(f, _)| f.starts_with("attn_fwd_mma")).collect();
    assert!(!kernels.is_empty(), "no attn_fwd_mma entry in the SASS");
    for (f, c) in &kernels {
        assert!(c[0] > 0 && c[1] > 0, "{f}: HMMA {} LDGSTS {}", c[0], c[1]);
    }
}
