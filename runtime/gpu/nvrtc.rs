//! NVRTC: CUDA C++ source to CUBIN (or PTX) at run time. Needs only libnvrtc, no GPU.

use std::ffi::{c_char, CStr, CString};

use cudarc::nvrtc::sys;

use crate::{Error, Result};

/// Whether libnvrtc can be loaded.
pub fn nvrtc_available() -> bool {
    // SAFETY: only probes whether the shared library can be dlopen'ed.
    unsafe { sys::is_culib_present() }
}

/// NVRTC's (major, minor) version.
pub fn nvrtc_version() -> Result<(i32, i32)> {
    if !nvrtc_available() {
        return Err(Error::NoDevice("libnvrtc is not installed (needs NVRTC 13.x on the library path)".into()));
    }
    let (mut major, mut minor) = (0, 0);
    // SAFETY: out-pointers valid; the library is present.
    let r = unsafe { sys::nvrtcVersion(&mut major, &mut minor) };
    nv_check("nvrtcVersion", r)?;
    Ok((major, minor))
}

/// The real architectures (`52`, ..., `90`, `100`, ...) this NVRTC can emit SASS for.
pub fn nvrtc_supported_archs() -> Result<Vec<i32>> {
    let mut n = 0;
    // SAFETY: out-pointer valid.
    nv_check("nvrtcGetNumSupportedArchs", unsafe { sys::nvrtcGetNumSupportedArchs(&mut n) })?;
    let mut v = vec![0i32; n.max(0) as usize];
    // SAFETY: `v` has room for `n` entries.
    nv_check("nvrtcGetSupportedArchs", unsafe { sys::nvrtcGetSupportedArchs(v.as_mut_ptr()) })?;
    Ok(v)
}

/// A compiled image: CUBIN, or PTX (NUL-terminated) when compiled for a virtual architecture.
pub struct CompileOutput {
    pub image: Vec<u8>,
    pub is_cubin: bool,
    pub log: String,
}

fn nv_check(call: &'static str, r: sys::nvrtcResult) -> Result<()> {
    if r == sys::nvrtcResult::NVRTC_SUCCESS {
        return Ok(());
    }
    // SAFETY: nvrtcGetErrorString returns a static string.
    let msg = unsafe { CStr::from_ptr(sys::nvrtcGetErrorString(r)) }.to_string_lossy().into_owned();
    Err(Error::Cuda { call, msg })
}

/// Compiles `source` (file name `file`, for messages) with `headers` available to `#include "name"`.
/// `arch` is an NVRTC `--gpu-architecture` value: `sm_XX` gives CUBIN, `compute_XX` gives PTX.
pub fn nvrtc_compile(file: &str, source: &str, headers: &[(&str, &str)], arch: &str, options: &[String]) -> Result<CompileOutput> {
    if !nvrtc_available() {
        return Err(Error::NoDevice("libnvrtc is not installed (needs NVRTC 13.x on the library path)".into()));
    }
    let cstr = |s: &str| CString::new(s).map_err(|_| Error::invalid(format!("NUL byte in kernel source or option for {file}")));
    let src = cstr(source)?;
    let name = cstr(file)?;
    let hsrc: Vec<CString> = headers.iter().map(|(_, s)| cstr(s)).collect::<Result<_>>()?;
    let hname: Vec<CString> = headers.iter().map(|(n, _)| cstr(n)).collect::<Result<_>>()?;
    let hsrc_p: Vec<*const c_char> = hsrc.iter().map(|s| s.as_ptr()).collect();
    let hname_p: Vec<*const c_char> = hname.iter().map(|s| s.as_ptr()).collect();
    let mut opts: Vec<CString> = vec![cstr(&format!("--gpu-architecture={arch}"))?];
    for o in options {
        opts.push(cstr(o)?);
    }
    let opts_p: Vec<*const c_char> = opts.iter().map(|s| s.as_ptr()).collect();

    let mut prog: sys::nvrtcProgram = std::ptr::null_mut();
    // SAFETY: all strings are NUL-terminated and outlive the program; counts match the arrays.
    nv_check("nvrtcCreateProgram", unsafe {
        sys::nvrtcCreateProgram(&mut prog, src.as_ptr(), name.as_ptr(), headers.len() as i32, hsrc_p.as_ptr(), hname_p.as_ptr())
    })?;
    let result = (|| {
        // SAFETY: `prog` is live; options array matches its count.
        let status = unsafe { sys::nvrtcCompileProgram(prog, opts_p.len() as i32, opts_p.as_ptr()) };
        let log = program_log(prog);
        if status != sys::nvrtcResult::NVRTC_SUCCESS {
            // SAFETY: static string.
            let msg = unsafe { CStr::from_ptr(sys::nvrtcGetErrorString(status)) }.to_string_lossy().into_owned();
            return Err(Error::Compile { file: file.to_string(), arch: arch.to_string(), msg, log });
        }
        let is_cubin = arch.starts_with("sm_");
        let mut size = 0usize;
        let image = if is_cubin {
            // SAFETY: `prog` compiled successfully; buffer sized by the size query.
            nv_check("nvrtcGetCUBINSize", unsafe { sys::nvrtcGetCUBINSize(prog, &mut size) })?;
            let mut buf = vec![0u8; size];
            nv_check("nvrtcGetCUBIN", unsafe { sys::nvrtcGetCUBIN(prog, buf.as_mut_ptr() as *mut c_char) })?;
            buf
        } else {
            // SAFETY: as above; the PTX size includes the terminating NUL.
            nv_check("nvrtcGetPTXSize", unsafe { sys::nvrtcGetPTXSize(prog, &mut size) })?;
            let mut buf = vec![0u8; size];
            nv_check("nvrtcGetPTX", unsafe { sys::nvrtcGetPTX(prog, buf.as_mut_ptr() as *mut c_char) })?;
            buf
        };
        Ok(CompileOutput { image, is_cubin, log })
    })();
    // SAFETY: `prog` is live and destroyed exactly once.
    unsafe {
        sys::nvrtcDestroyProgram(&mut prog);
    }
    result
}

fn program_log(prog: sys::nvrtcProgram) -> String {
    let mut size = 0usize;
    // SAFETY: `prog` is live; buffer sized by the size query.
    unsafe {
        if sys::nvrtcGetProgramLogSize(prog, &mut size) != sys::nvrtcResult::NVRTC_SUCCESS || size == 0 {
            return String::new();
        }
        let mut buf = vec![0u8; size];
        if sys::nvrtcGetProgramLog(prog, buf.as_mut_ptr() as *mut c_char) != sys::nvrtcResult::NVRTC_SUCCESS {
            return String::new();
        }
        String::from_utf8_lossy(&buf).trim_end_matches('\0').trim().to_string()
    }
}
