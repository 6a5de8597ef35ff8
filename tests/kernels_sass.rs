//! The compiled kernels against what the runtime declares and expects: every entry of the kernel table
//! (`gpu::kernels`) exists in its file's sm_90a CUBIN with the declared parameter sizes and every CUBIN
//! entry is declared; the tensor-core attention kernels compile to the instructions they exist for (the
//! sm_90a kernel's CUBIN contains HGMMA (warpgroup MMA) and UTMALDG (bulk tensor copies), the sm_80
//! kernel's HMMA and LDGSTS (cp.async)), and so do the implicit-GEMM conv kernels (HMMA, LDGSTS, LDSM,
//! no register spills; the f32 3xTF32 kernel HMMA and LDGSTS), the narrow-output conv kernel (FFMA,
//! 16-byte loads, no spills) and the small-input one (FFMA, 16-byte shared loads and global stores, no
//! spills). No GPU: NVRTC compiles, `cuobjdump` reads the CUBINs.
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
    dump(tool, name, target, "--dump-sass")
}

/// `cuobjdump {flag}` of one kernel file compiled for `target`.
fn dump(tool: &PathBuf, name: &str, target: &str, flag: &str) -> String {
    let out = registry::compile(name, target).unwrap_or_else(|e| panic!("{name} for {target}: {e}"));
    assert!(out.is_cubin, "{name} for {target}: expected a CUBIN");
    let path = std::env::temp_dir().join(format!("wanrt-sass-{}-{name}-{target}{flag}.cubin", std::process::id()));
    std::fs::write(&path, &out.image).unwrap();
    let res = Command::new(tool).arg(flag).arg(&path).output().unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(res.status.success(), "cuobjdump {flag} {name} {target}: {}", String::from_utf8_lossy(&res.stderr));
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

/// The cuobjdump to use, `None` (with the reason printed) when there is none, a failure when
/// `WANRT_REQUIRE_CUOBJDUMP=1` and it cannot run.
fn require() -> Option<PathBuf> {
    let required = std::env::var("WANRT_REQUIRE_CUOBJDUMP").is_ok_and(|v| v == "1");
    gpu::nvrtc_version().expect("libnvrtc must be on the library path (see README)");
    match cuobjdump() {
        Some(t) => {
            // `--dump-sass` runs nvdisasm from PATH; without it there is no SASS to check.
            let nvdisasm = Command::new("nvdisasm").arg("--version").output().is_ok_and(|o| o.status.success());
            match (nvdisasm, required) {
                (true, _) => Some(t),
                (false, true) => panic!("WANRT_REQUIRE_CUOBJDUMP=1 but nvdisasm is not on PATH (cuobjdump --dump-sass needs it)"),
                (false, false) => {
                    eprintln!("skipped: no nvdisasm on PATH (install the nvidia-cuda-nvdisasm wheel)");
                    None
                }
            }
        }
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

/// The implicit-GEMM conv kernel (kernels/conv3d_mma.cu) for sm_80: every entry multiplies on the
/// tensor cores (HMMA), gathers with cp.async (LDGSTS), reads fragments with ldmatrix (LDSM), and keeps
/// its accumulators in registers (no local-memory spill: no STL/LDL).
#[test]
fn ampere_conv_uses_mma_and_cp_async() {
    let Some(tool) = require() else { return };
    for target in ["sm_80", "sm_90a"] {
        let text = sass(&tool, "conv3d_mma", target);
        // Registers per entry, for the record (the launch bounds cap them; spills are checked below).
        let usage = dump(&tool, "conv3d_mma", target, "--dump-resource-usage");
        let mut entry = "";
        for l in usage.lines().map(str::trim) {
            if l.starts_with("Function") {
                entry = l;
            } else if l.starts_with("REG:") {
                eprintln!("{target} {entry} {l}");
            }
        }
        let kernels: Vec<_> =
            counts(&text, &["HMMA", "LDGSTS", "LDSM", "STL", "LDL"]).into_iter().filter(|(f, _)| f.starts_with("conv3d_mma")).collect();
        let want = 2 * wanrt::runtime::ops::conv::mma::tiles().len();
        assert_eq!(kernels.len(), want, "{target}: expected {want} conv3d_mma entries in the SASS, found {}", kernels.len());
        for (f, c) in &kernels {
            eprintln!("{target} {f}: HMMA {} LDGSTS {} LDSM {} STL {} LDL {}", c[0], c[1], c[2], c[3], c[4]);
            assert!(c[0] > 0 && c[1] > 0 && c[2] > 0, "{target} {f}: HMMA {} LDGSTS {} LDSM {}", c[0], c[1], c[2]);
            assert!(c[3] == 0 && c[4] == 0, "{target} {f}: register spills (STL {} LDL {})", c[3], c[4]);
        }
    }
}

/// The f32 conv kernel (kernels/conv3d_tf32.cu, 3xTF32) for sm_80 and sm_90a: every entry multiplies
/// on the tensor cores (HMMA, three per product tile), gathers with cp.async (LDGSTS), and keeps its
/// accumulators in registers (no STL/LDL); registers per entry are printed for the record.
#[test]
fn conv_tf32_uses_mma_and_cp_async() {
    let Some(tool) = require() else { return };
    for target in ["sm_80", "sm_90a"] {
        let text = sass(&tool, "conv3d_tf32", target);
        let usage = dump(&tool, "conv3d_tf32", target, "--dump-resource-usage");
        let mut entry = "";
        for l in usage.lines().map(str::trim) {
            if l.starts_with("Function") {
                entry = l;
            } else if l.starts_with("REG:") {
                eprintln!("{target} {entry} {l}");
            }
        }
        let kernels: Vec<_> =
            counts(&text, &["HMMA", "LDGSTS", "STL", "LDL"]).into_iter().filter(|(f, _)| f.starts_with("conv3d_tf32")).collect();
        let want = wanrt::runtime::ops::conv::tf32::tiles().len();
        assert_eq!(kernels.len(), want, "{target}: expected {want} conv3d_tf32 entries in the SASS, found {}", kernels.len());
        for (f, c) in &kernels {
            eprintln!("{target} {f}: HMMA {} LDGSTS {} STL {} LDL {}", c[0], c[1], c[2], c[3]);
            assert!(c[0] > 0 && c[1] > 0, "{target} {f}: HMMA {} LDGSTS {}", c[0], c[1]);
            assert!(c[2] == 0 && c[3] == 0, "{target} {f}: register spills (STL {} LDL {})", c[2], c[3]);
        }
    }
}

/// The experimental wgmma conv kernel (kernels/conv3d_wgmma.cu) for sm_90a: warpgroup MMA (HGMMA),
/// cp.async gathers (LDGSTS), no register spills.
#[test]
fn hopper_conv_uses_wgmma_and_cp_async() {
    let Some(tool) = require() else { return };
    let text = sass(&tool, "conv3d_wgmma", "sm_90a");
    let kernels: Vec<_> = counts(&text, &["HGMMA", "LDGSTS", "STL", "LDL"]).into_iter().filter(|(f, _)| f.starts_with("conv3d_wgmma")).collect();
    let want = 2 * wanrt::runtime::ops::conv::wgmma::tiles().len();
    assert_eq!(kernels.len(), want, "expected {want} conv3d_wgmma entries in the SASS, found {}", kernels.len());
    for (f, c) in &kernels {
        eprintln!("sm_90a {f}: HGMMA {} LDGSTS {} STL {} LDL {}", c[0], c[1], c[2], c[3]);
        assert!(c[0] > 0 && c[1] > 0, "{f}: HGMMA {} LDGSTS {}", c[0], c[1]);
        assert!(c[2] == 0 && c[3] == 0, "{f}: register spills (STL {} LDL {})", c[2], c[3]);
    }
}

/// The row-sharing wgmma conv kernel (kernels/conv3d_wgmma_rows.cu) for sm_90a: HGMMA, cp.async
/// gathers, no register spills, in every entry (m128 and m256 tiles); registers per entry are printed
/// for the record.
#[test]
fn hopper_row_conv_uses_wgmma_and_cp_async() {
    let Some(tool) = require() else { return };
    let usage = dump(&tool, "conv3d_wgmma_rows", "sm_90a", "--dump-resource-usage");
    let mut entry = "";
    for l in usage.lines().map(str::trim) {
        if l.starts_with("Function") {
            entry = l;
        } else if l.starts_with("REG:") {
            eprintln!("sm_90a {entry} {l}");
        }
    }
    let text = sass(&tool, "conv3d_wgmma_rows", "sm_90a");
    let kernels: Vec<_> = counts(&text, &["HGMMA", "LDGSTS", "STL", "LDL"]).into_iter().filter(|(f, _)| f.starts_with("conv3d_wgmma_rows")).collect();
    let want = 2 * wanrt::runtime::ops::conv::wgmma_rows::tiles().len();
    assert_eq!(kernels.len(), want, "expected {want} conv3d_wgmma_rows entries in the SASS, found {}", kernels.len());
    for (f, c) in &kernels {
        eprintln!("sm_90a {f}: HGMMA {} LDGSTS {} STL {} LDL {}", c[0], c[1], c[2], c[3]);
        assert!(c[0] > 0 && c[1] > 0, "{f}: HGMMA {} LDGSTS {}", c[0], c[1]);
        assert!(c[2] == 0 && c[3] == 0, "{f}: register spills (STL {} LDL {})", c[2], c[3]);
    }
}

/// The f32 row-sharing wgmma conv kernel (kernels/conv3d_wgmma_tf32_rows.cu, 3xTF32) for sm_90a: every
/// entry multiplies with HGMMA (three per k8 step, A from registers), gathers with cp.async (LDGSTS),
/// reads its A fragments with ldmatrix (LDSM) and keeps the accumulators, partials and fragments in
/// registers (no STL/LDL); registers per entry are printed for the record.
#[test]
fn hopper_tf32_row_conv_uses_wgmma_and_cp_async() {
    let Some(tool) = require() else { return };
    let usage = dump(&tool, "conv3d_wgmma_tf32_rows", "sm_90a", "--dump-resource-usage");
    let mut entry = "";
    for l in usage.lines().map(str::trim) {
        if l.starts_with("Function") {
            entry = l;
        } else if l.starts_with("REG:") {
            eprintln!("sm_90a {entry} {l}");
        }
    }
    let text = sass(&tool, "conv3d_wgmma_tf32_rows", "sm_90a");
    let kernels: Vec<_> =
        counts(&text, &["HGMMA", "LDGSTS", "LDSM", "STL", "LDL"]).into_iter().filter(|(f, _)| f.starts_with("conv3d_wgmma_tf32_rows")).collect();
    let want = wanrt::runtime::ops::conv::wgmma_tf32_rows::tiles().len();
    assert_eq!(kernels.len(), want, "expected {want} conv3d_wgmma_tf32_rows entries in the SASS, found {}", kernels.len());
    for (f, c) in &kernels {
        eprintln!("sm_90a {f}: HGMMA {} LDGSTS {} LDSM {} STL {} LDL {}", c[0], c[1], c[2], c[3], c[4]);
        assert!(c[0] > 0 && c[1] > 0 && c[2] > 0, "{f}: HGMMA {} LDGSTS {} LDSM {}", c[0], c[1], c[2]);
        assert!(c[3] == 0 && c[4] == 0, "{f}: register spills (STL {} LDL {})", c[3], c[4]);
    }
}

/// The narrow-output conv kernel (kernels/conv3d_narrow.cu) for sm_80 and sm_90a: every entry
/// multiplies with FFMA (no tensor cores: its f32 entries are f32-exact), stages its input halo with
/// 16-byte loads (LDG.E.128), and keeps its accumulators and weights in registers (no STL/LDL).
#[test]
fn narrow_conv_uses_ffma_and_128_bit_loads() {
    let Some(tool) = require() else { return };
    for target in ["sm_80", "sm_90a"] {
        let text = sass(&tool, "conv3d_narrow", target);
        let mut seen = 0;
        for block in text.split("Function : ").skip(1) {
            let name = block.lines().next().unwrap_or("").trim();
            if !name.starts_with("conv3d_narrow") {
                continue;
            }
            seen += 1;
            let ops: Vec<&str> = block
                .lines()
                .filter_map(|l| l.split("*/").nth(1))
                .filter_map(|b| b.split_whitespace().find(|w| !w.starts_with('@')))
                .collect();
            let count = |m: &str| ops.iter().filter(|o| o.split('.').next() == Some(m)).count();
            let wide = ops.iter().filter(|o| o.starts_with("LDG") && o.contains(".128")).count();
            eprintln!("{target} {name}: FFMA {} LDG.128 {wide} STL {} LDL {}", count("FFMA"), count("STL"), count("LDL"));
            assert!(count("FFMA") > 0 && count("HMMA") == 0, "{target} {name}: FFMA {} HMMA {}", count("FFMA"), count("HMMA"));
            assert!(wide > 0, "{target} {name}: no 128-bit global load");
            assert_eq!((count("STL"), count("LDL")), (0, 0), "{target} {name}: register spills");
        }
        use wanrt::runtime::ops::conv::narrow::{COUT_ENTRIES, MAX_GROUP_COUT};
        let want = 3 * (COUT_ENTRIES.len() + COUT_ENTRIES.iter().filter(|&&n| n <= MAX_GROUP_COUT).count());
        assert_eq!(seen, want, "{target}: expected {want} conv3d_narrow entries in the SASS");
    }
}

/// The small-input conv kernel (kernels/conv3d_small_cin.cu) for sm_80 and sm_90a: every entry
/// multiplies with FFMA (no tensor cores: its f32 entries are f32-exact), reads its input windows and
/// weights from shared memory with 16-byte loads (LDS.128), stores whole channel groups with 16-byte
/// stores (STG.E.128), and keeps its 64 accumulators in registers (no STL/LDL at the 128-register
/// bound of two CTAs per SM); registers per entry are printed for the record.
#[test]
fn small_cin_conv_uses_ffma_without_spills() {
    let Some(tool) = require() else { return };
    for target in ["sm_80", "sm_90a"] {
        let usage = dump(&tool, "conv3d_small_cin", target, "--dump-resource-usage");
        let mut entry = "";
        for l in usage.lines().map(str::trim) {
            if l.starts_with("Function") {
                entry = l;
            } else if l.starts_with("REG:") {
                eprintln!("{target} {entry} {l}");
            }
        }
        let text = sass(&tool, "conv3d_small_cin", target);
        let kernels: Vec<_> =
            counts(&text, &["FFMA", "HMMA", "STL", "LDL"]).into_iter().filter(|(f, _)| f.starts_with("conv3d_small_cin")).collect();
        let want = 3 * wanrt::runtime::ops::conv::small_cin::CIN_ENTRIES.len();
        assert_eq!(kernels.len(), want, "{target}: expected {want} conv3d_small_cin entries in the SASS, found {}", kernels.len());
        for block in text.split("Function : ").skip(1) {
            let name = block.lines().next().unwrap_or("").trim();
            if !name.starts_with("conv3d_small_cin") {
                continue;
            }
            let ops: Vec<&str> = block
                .lines()
                .filter_map(|l| l.split("*/").nth(1))
                .filter_map(|b| b.split_whitespace().find(|w| !w.starts_with('@')))
                .collect();
            let count = |m: &str| ops.iter().filter(|o| o.split('.').next() == Some(m)).count();
            let wide = |m: &str| ops.iter().filter(|o| o.starts_with(m) && o.contains(".128")).count();
            eprintln!(
                "{target} {name}: FFMA {} LDS.128 {} STG.128 {} STL {} LDL {}",
                count("FFMA"),
                wide("LDS"),
                wide("STG"),
                count("STL"),
                count("LDL")
            );
            assert!(count("FFMA") > 0 && count("HMMA") == 0, "{target} {name}: FFMA {} HMMA {}", count("FFMA"), count("HMMA"));
            assert!(wide("LDS") > 0 && wide("STG") > 0, "{target} {name}: LDS.128 {} STG.128 {}", wide("LDS"), wide("STG"));
            assert_eq!((count("STL"), count("LDL")), (0, 0), "{target} {name}: register spills");
        }
    }
}

/// The packed (`*_v8`) memory-bound kernels move 16 bytes per global access: every bf16 entry loads and
/// stores with 128-bit instructions (LDG.E.128 / STG.E.128) and none with 16-bit ones, and spills no
/// registers.
#[test]
fn packed_kernels_use_128_bit_accesses() {
    let Some(tool) = require() else { return };
    for file in ["activation", "elementwise", "modulate", "norm", "rope", "resample"] {
        let text = sass(&tool, file, "sm_80");
        let mut seen = 0;
        for block in text.split("Function : ").skip(1) {
            let name = block.lines().next().unwrap_or("").trim();
            // Entries per dtype pair end in `bf16_bf16`; the resample copies have one dtype.
            if !(name.contains("_v8_") && (name.ends_with("bf16_bf16") || (file == "resample" && name.ends_with("_bf16")))) {
                continue;
            }
            seen += 1;
            let ops: Vec<&str> = block
                .lines()
                .filter_map(|l| l.split("*/").nth(1))
                .filter_map(|b| b.split_whitespace().find(|w| !w.starts_with('@')))
                .collect();
            let wide = |m: &str| ops.iter().filter(|o| o.starts_with(m) && o.ends_with(".128")).count();
            let narrow = |m: &str| ops.iter().filter(|o| o.starts_with(m) && (o.ends_with(".U16") || o.ends_with(".16"))).count();
            let spills = ops.iter().filter(|o| o.starts_with("STL") || o.starts_with("LDL")).count();
            eprintln!("{name}: LDG.128 {} STG.128 {} 16-bit LDG {} STG {} STL/LDL {spills}", wide("LDG"), wide("STG"), narrow("LDG"), narrow("STG"));
            assert!(wide("LDG") > 0 && wide("STG") > 0, "{name}: no 128-bit global access");
            assert_eq!((narrow("LDG"), narrow("STG")), (0, 0), "{name}: 16-bit global accesses");
            assert_eq!(spills, 0, "{name}: register spills");
        }
        assert!(seen > 0, "{file}: no packed bf16 entry");
    }
}

/// (ordinal, offset, size) of one kernel parameter.
type KParam = (u32, u32, u32);

/// Parameters of every kernel entry of a CUBIN, from `cuobjdump -elf`: each kernel has a
/// `.nv.info.{entry}` section whose `EIATTR_KPARAM_INFO` attributes give each parameter's ordinal,
/// offset and size. Returns (entry, [(ordinal, offset, size)] sorted by ordinal).
fn kernel_params(elf: &str) -> Vec<(String, Vec<KParam>)> {
    let hex = |line: &str, key: &str| -> Option<u32> {
        let rest = line.split(key).nth(1)?.trim_start().trim_start_matches(':').trim_start();
        u32::from_str_radix(rest.split_whitespace().next()?.trim_start_matches("0x"), 16).ok()
    };
    let mut out: Vec<(String, Vec<KParam>)> = Vec::new();
    for line in elf.lines() {
        if let Some(name) = line.strip_prefix(".nv.info.") {
            out.push((name.trim().to_string(), Vec::new()));
        } else if line.starts_with('.') {
            out.push((String::new(), Vec::new())); // another section: stop attributing to the kernel
        } else if line.contains("Ordinal") && line.contains("Size") {
            let (Some(o), Some(off), Some(sz)) = (hex(line, "Ordinal"), hex(line, "Offset"), hex(line, "Size")) else {
                panic!("unparsed KPARAM_INFO line: {line}");
            };
            out.last_mut().expect("a KPARAM_INFO outside any section").1.push((o, off, sz));
        }
    }
    out.retain(|(name, _)| !name.is_empty());
    for (_, params) in &mut out {
        params.sort();
    }
    out
}

/// Every declared kernel entry is in its file's sm_90a CUBIN with the declared parameter count and
/// sizes (ordinals 0..n in order, offsets increasing), and every kernel of every file is declared.
#[test]
fn kernel_table_matches_the_cubins() {
    let Some(tool) = require() else { return };
    let decls = wanrt::runtime::gpu::kernels::declarations();
    let mut problems = Vec::new();
    for src in registry::sources() {
        let found = kernel_params(&dump(&tool, src.name, "sm_90a", "-elf"));
        assert!(!found.is_empty(), "{}: no kernel found in cuobjdump -elf output", src.name);
        let declared: Vec<_> = decls.iter().filter(|d| d.module == src.name).collect();
        for d in &declared {
            for entry in &d.entries {
                let Some((_, params)) = found.iter().find(|(n, _)| n == entry) else {
                    problems.push(format!("{}: declared entry {entry} is not in the CUBIN", src.name));
                    continue;
                };
                let ordinals: Vec<u32> = params.iter().map(|p| p.0).collect();
                let sizes: Vec<usize> = params.iter().map(|p| p.2 as usize).collect();
                if ordinals != (0..params.len() as u32).collect::<Vec<_>>() || params.windows(2).any(|w| w[0].1 >= w[1].1) {
                    problems.push(format!("{}: {entry}: odd parameter ordinals/offsets {params:?}", src.name));
                }
                if sizes != d.param_sizes {
                    problems.push(format!("{}: {entry}: parameter sizes {sizes:?}, declared {:?}", src.name, d.param_sizes));
                }
            }
        }
        for (name, _) in &found {
            if !declared.iter().any(|d| d.entries.contains(name)) {
                problems.push(format!("{}: kernel {name} is not declared in runtime/gpu/kernels.rs", src.name));
            }
        }
    }
    assert!(decls.iter().all(|d| registry::sources().iter().any(|s| s.name == d.module)), "a declaration names a missing file");
    let entries: usize = decls.iter().map(|d| d.entries.len()).sum();
    eprintln!("{} families, {entries} entries checked", decls.len());
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
