//! Every environment switch of the runtime and the models, read once per process.
//!
//! The variables are read on the first call to [`settings`] and never again: a switch changed later in
//! the process (`std::env::set_var`) has no effect. Nothing else in `runtime/` or `models/` reads the
//! environment (checked by `tests/layout.rs`).
//!
//! An empty value (`WANRT_PACKED=`) is the same as unset, for every variable below. On/off switches
//! take `1`, `true` or `on` and `0`, `false` or `off` (any case); `WANRT_CONV` and `WANRT_CONV_F32`
//! take the values listed. Any other value is malformed: [`Settings::check`] names it, and
//! [`Device::get`](crate::gpu::Device::get) (so every GPU run) and the `wan` command refuse to start;
//! until then the switch keeps its default. Tile, variant and node values are checked where they are
//! used.
//!
//! | variable | field | default |
//! |---|---|---|
//! | `WANRT_ATTN_WGMMA=0` | [`Settings::attn_wgmma`] | on |
//! | `WANRT_ATTN_PORTABLE=1` | [`Settings::attn_portable`] | off |
//! | `WANRT_ATTN_TILE=m128n64w4` | [`Settings::attn_tile`] | the tile table's choice |
//! | `WANRT_ATTN_WGMMA_VARIANT=n176s2p` | [`Settings::attn_wgmma_variant`] | chosen by key length |
//! | `WANRT_CONV_ROWS_TILE=m256n96s4k32w` | [`Settings::conv_rows_tile`] | the row conv's tile table |
//! | `WANRT_GEMM_SIMT=1` | [`Settings::gemm_simt`] | off |
//! | `WANRT_PIN_REGISTER=0` | [`Settings::pin_register`] | on |
//! | `WANRT_KERNEL_CACHE=/path` or `=off` | [`Settings::kernel_cache`] | `$XDG_CACHE_HOME/wanrt/kernels`, else `~/.cache/wanrt/kernels` |
//! | `WANRT_QKV_STACK=0` | [`Settings::qkv_stack`] | on |
//! | `WANRT_PACKED=0` | [`Settings::packed`] | on |
//! | `WANRT_UNVERIFIED=1` | [`Settings::unverified`] | off |
//! | `WANRT_CONV=auto`, `=portable`, `=mma` or `=wgmma` | [`Settings::conv`] | `auto` (bf16/f16: wgmma on sm_90, else mma) |
//! | `WANRT_CONV_F32=tf32x3` or `=exact` | [`Settings::conv_f32_tf32x3`] | `tf32x3` (f32 convs on the 3xTF32 tensor-core kernel, sm_80+) |
//! | `WANRT_NODES=N`, `WANRT_NODE_RANK=i` | [`Settings::nodes`], [`Settings::node_rank`] | one host |
//! | `WANRT_NCCL_ID=hex` or `WANRT_NCCL_ID_FILE=/path` | [`Settings::nccl_id`], [`Settings::nccl_id_file`] | made in process (one host) |
//! | `HF_HUB_CACHE`, `HF_HOME`, `XDG_CACHE_HOME` | [`Settings::hf_hub_cache`] | `~/.cache/huggingface/hub` |

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::OnceLock;

use crate::{Error, Result};

/// An on/off switch's spellings (compared case-insensitively) and their states.
const FLAG_SPELLINGS: [(&str, bool); 6] = [("0", false), ("1", true), ("true", true), ("false", false), ("on", true), ("off", false)];
/// `WANRT_CONV`'s values.
pub const CONV_VALUES: [&str; 4] = ["auto", "portable", "mma", "wgmma"];
/// `WANRT_CONV_F32`'s values.
pub const CONV_F32_VALUES: [&str; 2] = ["tf32x3", "exact"];

/// The process's switches; see the module table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// `WANRT_ATTN_WGMMA`: `ops::attention` tries the Hopper wgmma kernel first (`0` turns it off).
    pub attn_wgmma: bool,
    /// `WANRT_ATTN_PORTABLE=1`: every tensor-core attention path declines; the portable kernel runs.
    pub attn_portable: bool,
    /// `WANRT_ATTN_TILE`: an mma.sync tile name (`m128n64w8`) overriding the tile table, for
    /// experiments and bisection.
    pub attn_tile: Option<String>,
    /// `WANRT_ATTN_WGMMA_VARIANT`: a wgmma variant name (`n128s2p`) overriding the choice by key length.
    pub attn_wgmma_variant: Option<String>,
    /// `WANRT_CONV_ROWS_TILE`: row-sharing conv tile names, comma-separated (`m256n96s4k32w`), each
    /// taken instead of the table's choice by every row conv of the same N width whose Cin its channel
    /// block divides, for experiments and bisection (`ops::conv::wgmma_rows::row_tile`).
    pub conv_rows_tile: Option<String>,
    /// `WANRT_GEMM_SIMT=1`: cuBLASLt without its tensor-op kernels, for compute-sanitizer racecheck
    /// runs (cuBLAS's Hopper tensor-core kernels report hazards racecheck cannot attribute, and
    /// excluding them from instrumentation crashes the sanitizer, CUDA 13.0). Slow; results differ
    /// from the default kernels' by accumulation order, so compare runs under one setting.
    pub gemm_simt: bool,
    /// `WANRT_PIN_REGISTER`: `PinnedPool::alloc_filled` registers the process's own pages (`0`:
    /// `cuMemHostAlloc` always, to compare DMA rates).
    pub pin_register: bool,
    /// `WANRT_KERNEL_CACHE`: where compiled kernels are cached (`None`: `=off`, no cache).
    pub kernel_cache: Option<PathBuf>,
    /// `WANRT_QKV_STACK`: the self-attention's q, k and v come from one batched GEMM over their stacked
    /// weights (`0`: three GEMMs, for comparison).
    pub qkv_stack: bool,
    /// `WANRT_PACKED`: memory-bound elementwise and row kernels move packs of 8 elements with 16-byte
    /// accesses where the tensors allow (`0`: the scalar kernels, for comparison).
    pub packed: bool,
    /// `WANRT_UNVERIFIED=1`: kernels that are not on by default take part in dispatch: those written but
    /// not yet run on a GPU (today `ops::softmax`'s register-resident kernel for rows of 1024 to 16384),
    /// and those that pass their GPU tests but were not faster (`ops::conv3d_norm`'s fused epilogue and
    /// the row conv's 8-wide tile: the 480p-81f bf16 decode took 0.7108 → 0.7735 s with them, H100).
    /// Off by default; the GPU test round sets it.
    pub unverified: bool,
    /// `WANRT_CONV`: the conv3d kernel tried first: `auto` (on sm_90 the row-sharing wgmma kernel where
    /// it takes the conv, then wgmma; else mma.sync), `mma` (mma.sync, compute capability 8.0+), `wgmma`
    /// (sm_90a, the per-tap kernel only), `portable` (f32 FMA, every dtype). These
    /// pick among the bf16/f16 kernels. A declined fast path falls back.
    pub conv: String,
    /// `WANRT_CONV_F32=tf32x3` (the default): f32 convolutions on the 3xTF32 tensor-core kernel
    /// (`ops::conv::tf32`, compute capability 8.0+; about 2.7x faster than the FMA kernel, each product
    /// off by up to ~3·2^-22 of its magnitude, partial sums flushed into f32 so the VAE's fp32 parity
    /// holds); `exact`: the f32 FMA kernel, fp32 rounding.
    pub conv_f32_tf32x3: bool,
    /// `WANRT_NODES`: hosts taking part in one multi-GPU run (unparsed; `dist::Topology` checks it).
    pub nodes: Option<String>,
    /// `WANRT_NODE_RANK`: this host's index among them, 0 for the host that makes the NCCL id.
    pub node_rank: Option<String>,
    /// `WANRT_NCCL_ID`: the NCCL id as 256 hex digits (instead of a file).
    pub nccl_id: Option<String>,
    /// `WANRT_NCCL_ID_FILE`: where host 0 writes the NCCL id and the others read it (a shared folder).
    pub nccl_id_file: Option<PathBuf>,
    /// The Hugging Face hub cache where `--model owner/name` is looked up, resolved as
    /// `huggingface_hub/constants.py` does: `HF_HUB_CACHE` (or the older `HUGGINGFACE_HUB_CACHE`), else
    /// `$HF_HOME/hub`, else `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`.
    pub hf_hub_cache: Option<PathBuf>,
    /// One line per malformed value, in the table's order; see [`Settings::check`].
    problems: Vec<String>,
}

/// An on/off switch: `default` when unset; a malformed value is recorded in `problems`.
fn flag(name: &str, value: Option<String>, default: bool, problems: &mut Vec<String>) -> bool {
    let Some(v) = value else { return default };
    FLAG_SPELLINGS.iter().find(|(s, _)| s.eq_ignore_ascii_case(&v)).map(|&(_, on)| on).unwrap_or_else(|| {
        let accepted: Vec<&str> = FLAG_SPELLINGS.iter().map(|(s, _)| *s).collect();
        problems.push(format!("{name}={v:?} is not one of {}", accepted.join(", ")));
        default
    })
}

/// One of `values` (the first is the default); a malformed value is recorded in `problems`.
fn choice(name: &str, value: Option<String>, values: &[&'static str], problems: &mut Vec<String>) -> &'static str {
    match value {
        None => values[0],
        Some(v) => values.iter().copied().find(|&c| c == v).unwrap_or_else(|| {
            problems.push(format!("{name}={v:?} is not one of {}", values.join(", ")));
            values[0]
        }),
    }
}

impl Settings {
    /// The switches as `lookup` (a variable name to its value) gives them.
    /// Malformed values keep the switch's default and are listed by [`Settings::check`].
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<OsString>) -> Settings {
        let lookup = |name: &str| lookup(name).filter(|v| !v.is_empty());
        let text = |name: &str| lookup(name).map(|v| v.to_string_lossy().into_owned());
        let kernel_cache = match lookup("WANRT_KERNEL_CACHE") {
            Some(v) if v == "off" => None,
            Some(v) => Some(PathBuf::from(v)),
            None => lookup("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| lookup("HOME").map(|h| PathBuf::from(h).join(".cache")))
                .map(|base| base.join("wanrt").join("kernels")),
        };
        let hf_hub_cache = lookup("HF_HUB_CACHE")
            .or_else(|| lookup("HUGGINGFACE_HUB_CACHE"))
            .map(PathBuf::from)
            .or_else(|| {
                lookup("HF_HOME")
                    .map(PathBuf::from)
                    .or_else(|| lookup("XDG_CACHE_HOME").map(|x| PathBuf::from(x).join("huggingface")))
                    .or_else(|| lookup("HOME").map(|h| PathBuf::from(h).join(".cache").join("huggingface")))
                    .map(|home| home.join("hub"))
            });
        let mut problems = Vec::new();
        let p = &mut problems;
        let attn_wgmma = flag("WANRT_ATTN_WGMMA", text("WANRT_ATTN_WGMMA"), true, p);
        let attn_portable = flag("WANRT_ATTN_PORTABLE", text("WANRT_ATTN_PORTABLE"), false, p);
        let gemm_simt = flag("WANRT_GEMM_SIMT", text("WANRT_GEMM_SIMT"), false, p);
        let pin_register = flag("WANRT_PIN_REGISTER", text("WANRT_PIN_REGISTER"), true, p);
        let qkv_stack = flag("WANRT_QKV_STACK", text("WANRT_QKV_STACK"), true, p);
        let packed = flag("WANRT_PACKED", text("WANRT_PACKED"), true, p);
        let unverified = flag("WANRT_UNVERIFIED", text("WANRT_UNVERIFIED"), false, p);
        let conv = choice("WANRT_CONV", text("WANRT_CONV"), &CONV_VALUES, p).to_string();
        let conv_f32_tf32x3 = choice("WANRT_CONV_F32", text("WANRT_CONV_F32"), &CONV_F32_VALUES, p) == "tf32x3";
        Settings {
            attn_wgmma,
            attn_portable,
            attn_tile: text("WANRT_ATTN_TILE"),
            attn_wgmma_variant: text("WANRT_ATTN_WGMMA_VARIANT"),
            conv_rows_tile: text("WANRT_CONV_ROWS_TILE"),
            gemm_simt,
            pin_register,
            kernel_cache,
            qkv_stack,
            packed,
            unverified,
            conv,
            conv_f32_tf32x3,
            nodes: text("WANRT_NODES"),
            node_rank: text("WANRT_NODE_RANK"),
            nccl_id: text("WANRT_NCCL_ID"),
            nccl_id_file: lookup("WANRT_NCCL_ID_FILE").map(PathBuf::from),
            hf_hub_cache,
            problems,
        }
    }

    /// The malformed values, one line each (`WANRT_CONV="wgma" is not one of auto, portable, mma,
    /// wgmma`); empty when every switch parsed.
    pub fn problems(&self) -> &[String] {
        &self.problems
    }

    /// `Err(Error::Invalid)` naming every malformed switch, its value and the accepted values.
    pub fn check(&self) -> Result<()> {
        if self.problems.is_empty() {
            return Ok(());
        }
        Err(Error::invalid(format!("environment: {}", self.problems.join("; "))))
    }

    /// The switches of this process's environment (read now; [`settings`] keeps the first reading).
    pub fn from_env() -> Settings {
        Settings::from_lookup(|name| std::env::var_os(name))
    }
}

/// The process's switches, read from the environment on the first call.
pub fn settings() -> &'static Settings {
    static SETTINGS: OnceLock<Settings> = OnceLock::new();
    SETTINGS.get_or_init(Settings::from_env)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(vars: &[(&str, &str)]) -> Settings {
        let vars: Vec<(String, OsString)> = vars.iter().map(|(k, v)| (k.to_string(), OsString::from(v))).collect();
        Settings::from_lookup(|name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
    }

    #[test]
    fn defaults() {
        let s = with(&[("HOME", "/home/u")]);
        assert!(s.attn_wgmma && !s.attn_portable && !s.gemm_simt && s.pin_register && s.qkv_stack && s.packed);
        assert_eq!((s.attn_tile, s.attn_wgmma_variant, s.conv_rows_tile), (None, None, None));
        assert_eq!(s.kernel_cache, Some(PathBuf::from("/home/u/.cache/wanrt/kernels")));
        assert_eq!(with(&[]).kernel_cache, None, "no HOME, no XDG_CACHE_HOME: no cache");
        assert_eq!(s.hf_hub_cache, Some(PathBuf::from("/home/u/.cache/huggingface/hub")));
        assert_eq!(with(&[]).hf_hub_cache, None);
    }

    #[test]
    fn hub_cache_order() {
        let hub = |v: &[(&str, &str)]| with(v).hf_hub_cache.unwrap();
        assert_eq!(hub(&[("HF_HUB_CACHE", "/c"), ("HF_HOME", "/h"), ("HOME", "/u")]), PathBuf::from("/c"));
        assert_eq!(hub(&[("HUGGINGFACE_HUB_CACHE", "/old"), ("HF_HOME", "/h")]), PathBuf::from("/old"));
        assert_eq!(hub(&[("HF_HOME", "/h"), ("XDG_CACHE_HOME", "/x")]), PathBuf::from("/h/hub"));
        assert_eq!(hub(&[("XDG_CACHE_HOME", "/x"), ("HOME", "/u")]), PathBuf::from("/x/huggingface/hub"));
    }

    #[test]
    fn switches() {
        let s = with(&[
            ("WANRT_ATTN_WGMMA", "0"),
            ("WANRT_ATTN_PORTABLE", "1"),
            ("WANRT_ATTN_TILE", "m128n64w8"),
            ("WANRT_ATTN_WGMMA_VARIANT", "n128s2p"),
            ("WANRT_GEMM_SIMT", "1"),
            ("WANRT_PIN_REGISTER", "0"),
            ("WANRT_KERNEL_CACHE", "off"),
            ("WANRT_QKV_STACK", "0"),
            ("WANRT_PACKED", "0"),
            ("HOME", "/home/u"),
        ]);
        assert!(!s.attn_wgmma && s.attn_portable && s.gemm_simt && !s.pin_register && !s.qkv_stack && !s.packed);
        assert_eq!(s.attn_tile.as_deref(), Some("m128n64w8"));
        assert_eq!(s.attn_wgmma_variant.as_deref(), Some("n128s2p"));
        assert_eq!(s.kernel_cache, None);
        assert!(s.check().is_ok(), "{:?}", s.problems());
        // XDG_CACHE_HOME wins over HOME.
        let s = with(&[("WANRT_ATTN_WGMMA", "1"), ("WANRT_GEMM_SIMT", "1"), ("XDG_CACHE_HOME", "/x"), ("HOME", "/h")]);
        assert!(s.attn_wgmma && s.gemm_simt);
        assert_eq!(s.kernel_cache, Some(PathBuf::from("/x/wanrt/kernels")));
        assert_eq!(with(&[("WANRT_KERNEL_CACHE", "/c")]).kernel_cache, Some(PathBuf::from("/c")));
    }

    const FLAGS: [&str; 7] = [
        "WANRT_ATTN_WGMMA",
        "WANRT_ATTN_PORTABLE",
        "WANRT_GEMM_SIMT",
        "WANRT_PIN_REGISTER",
        "WANRT_QKV_STACK",
        "WANRT_PACKED",
        "WANRT_UNVERIFIED",
    ];

    /// The field of an on/off switch.
    fn flag_of(s: &Settings, name: &str) -> bool {
        match name {
            "WANRT_ATTN_WGMMA" => s.attn_wgmma,
            "WANRT_ATTN_PORTABLE" => s.attn_portable,
            "WANRT_GEMM_SIMT" => s.gemm_simt,
            "WANRT_PIN_REGISTER" => s.pin_register,
            "WANRT_QKV_STACK" => s.qkv_stack,
            "WANRT_PACKED" => s.packed,
            "WANRT_UNVERIFIED" => s.unverified,
            _ => unreachable!("{name}"),
        }
    }

    #[test]
    fn flag_spellings() {
        for name in FLAGS {
            for (value, want) in
                [("1", true), ("true", true), ("On", true), ("TRUE", true), ("0", false), ("false", false), ("OFF", false), ("off", false)]
            {
                let s = with(&[(name, value)]);
                assert_eq!(flag_of(&s, name), want, "{name}={value}");
                assert!(s.check().is_ok(), "{name}={value}: {:?}", s.problems());
            }
        }
    }

    #[test]
    fn enumerated_values() {
        for value in CONV_VALUES {
            let s = with(&[("WANRT_CONV", value)]);
            assert_eq!((s.conv.as_str(), s.check().is_ok()), (value, true));
        }
        assert_eq!(with(&[]).conv, "auto");
        assert!(with(&[("WANRT_CONV_F32", "tf32x3")]).conv_f32_tf32x3);
        assert!(!with(&[("WANRT_CONV_F32", "exact")]).conv_f32_tf32x3);
        assert!(with(&[]).conv_f32_tf32x3);
    }

    #[test]
    fn malformed_values_are_named() {
        let bool_values = "0, 1, true, false, on, off";
        let mut cases: Vec<(&str, &str, &str)> =
            FLAGS.iter().flat_map(|&n| [(n, "no", bool_values), (n, "2", bool_values), (n, " 1", bool_values)]).collect();
        cases.extend([
            ("WANRT_CONV", "wgma", "auto, portable, mma, wgmma"),
            ("WANRT_CONV", "MMA", "auto, portable, mma, wgmma"),
            ("WANRT_CONV_F32", "tf33", "tf32x3, exact"),
            ("WANRT_CONV_F32", "1", "tf32x3, exact"),
        ]);
        let defaults = with(&[]);
        for (name, value, accepted) in cases {
            let s = with(&[(name, value)]);
            let want = format!("{name}={value:?} is not one of {accepted}");
            assert_eq!(s.problems(), std::slice::from_ref(&want), "{name}={value}");
            let e = s.check().unwrap_err();
            assert!(matches!(e, Error::Invalid(_)), "{e:?}");
            assert_eq!(e.to_string(), format!("environment: {want}"));
            // Until checked, the switch keeps its default.
            assert_eq!((s.conv.as_str(), s.conv_f32_tf32x3), (defaults.conv.as_str(), defaults.conv_f32_tf32x3));
            if FLAGS.contains(&name) {
                assert_eq!(flag_of(&s, name), flag_of(&defaults, name), "{name}={value}");
            }
        }
        // Several at once: every one named, in the table's order.
        let e = with(&[("WANRT_CONV", "wgma"), ("WANRT_PACKED", "no"), ("WANRT_ATTN_WGMMA", "false")]).check().unwrap_err().to_string();
        assert_eq!(
            e,
            "environment: WANRT_PACKED=\"no\" is not one of 0, 1, true, false, on, off; \
             WANRT_CONV=\"wgma\" is not one of auto, portable, mma, wgmma"
        );
    }

    #[test]
    fn empty_is_unset() {
        let names = [
            "WANRT_ATTN_WGMMA",
            "WANRT_ATTN_PORTABLE",
            "WANRT_ATTN_TILE",
            "WANRT_ATTN_WGMMA_VARIANT",
            "WANRT_GEMM_SIMT",
            "WANRT_PIN_REGISTER",
            "WANRT_KERNEL_CACHE",
            "WANRT_QKV_STACK",
            "WANRT_PACKED",
            "WANRT_CONV",
            "WANRT_CONV_F32",
            "WANRT_NODES",
            "WANRT_NODE_RANK",
            "WANRT_NCCL_ID",
            "WANRT_NCCL_ID_FILE",
            "HF_HUB_CACHE",
            "HUGGINGFACE_HUB_CACHE",
            "HF_HOME",
            "XDG_CACHE_HOME",
        ];
        let mut vars: Vec<(&str, &str)> = names.iter().map(|&n| (n, "")).collect();
        vars.push(("HOME", "/home/u"));
        let s = with(&vars);
        assert_eq!(s, with(&[("HOME", "/home/u")]));
        assert!(s.check().is_ok());
        assert_eq!(with(&[("HOME", "")]), with(&[]));
    }
}
