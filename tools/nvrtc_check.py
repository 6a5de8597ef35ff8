"""Compile-checks CUDA kernel sources with NVRTC alone (no GPU, no toolkit headers).

    python tools/nvrtc_check.py [--arch sm_80 --arch sm_90a ...] kernels/a.cu [kernels/b.cu ...]

Prints NVRTC's log for every file and architecture (default: sm_80, sm_86, sm_89, sm_90a, the design's
compile matrix) and exits non-zero if any compile fails. libnvrtc comes from the `nvidia-cuda-nvrtc`
wheel, or from $NVRTC_LIB.
"""

from __future__ import annotations

import argparse
import ctypes
import glob
import os
import pathlib
import sys

DEFAULT_ARCHS = ("sm_80", "sm_86", "sm_89", "sm_90a")


def find_nvrtc() -> str:
    if os.environ.get("NVRTC_LIB"):
        return os.environ["NVRTC_LIB"]
    roots = [pathlib.Path(p) for p in sys.path if p]
    for root in roots:
        hits = sorted(glob.glob(str(root / "nvidia" / "cu*" / "lib" / "libnvrtc.so.*")))
        hits += sorted(glob.glob(str(root / "nvidia" / "cuda_nvrtc" / "lib" / "libnvrtc.so.*")))
        if hits:
            return hits[0]
    return "libnvrtc.so"


def load(path: str) -> ctypes.CDLL:
    # libnvrtc dlopens its builtins by soname; the wheel's folder is not on the loader path, so load
    # them first, globally.
    for builtins in sorted(glob.glob(str(pathlib.Path(path).parent / "libnvrtc-builtins.so.*"))):
        if ".alt." not in builtins:
            ctypes.CDLL(builtins, mode=ctypes.RTLD_GLOBAL)
    lib = ctypes.CDLL(path)
    lib.nvrtcGetErrorString.restype = ctypes.c_char_p
    return lib


def check(lib: ctypes.CDLL, status: int, what: str) -> None:
    if status != 0:
        raise RuntimeError(f"{what}: {lib.nvrtcGetErrorString(status).decode()}")


def compile_one(lib: ctypes.CDLL, path: pathlib.Path, arch: str) -> tuple[bool, str]:
    prog = ctypes.c_void_p()
    src = path.read_bytes()
    check(lib, lib.nvrtcCreateProgram(ctypes.byref(prog), src, str(path).encode(), 0, None, None), "create")
    opts = [f"--gpu-architecture={arch}".encode(), b"--std=c++17"]
    arr = (ctypes.c_char_p * len(opts))(*opts)
    status = lib.nvrtcCompileProgram(prog, len(opts), arr)
    size = ctypes.c_size_t()
    check(lib, lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size)), "log size")
    log = ctypes.create_string_buffer(size.value)
    check(lib, lib.nvrtcGetProgramLog(prog, log), "log")
    lib.nvrtcDestroyProgram(ctypes.byref(prog))
    ok = status == 0
    text = log.value.decode(errors="replace").strip()
    if not ok:
        text = f"{lib.nvrtcGetErrorString(status).decode()}\n{text}"
    return ok, text


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", action="append", help="target, e.g. sm_80 (repeatable)")
    ap.add_argument("files", nargs="+", type=pathlib.Path)
    args = ap.parse_args()
    lib = load(find_nvrtc())
    major, minor = ctypes.c_int(), ctypes.c_int()
    check(lib, lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)), "version")
    print(f"NVRTC {major.value}.{minor.value}")
    failed = 0
    for path in args.files:
        for arch in args.arch or DEFAULT_ARCHS:
            ok, log = compile_one(lib, path, arch)
            print(f"{'ok  ' if ok else 'FAIL'} {path} {arch}" + (f"\n{log}" if log else ""))
            failed += not ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
