"""How fast can 8 GiB of host memory be pinned? cudaHostAlloc in 1 or 8 threads, and malloc + parallel
first touch + cudaHostRegister, through the toolkit's CUDA runtime. One JSON line per method.
Measures the setup cost behind `wan bench` offload modes (PinnedArena)."""
import ctypes, glob, json, time, threading

rt = ctypes.CDLL(sorted(glob.glob("/usr/local/cuda/lib64/libcudart.so*"))[0])
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
rt.cudaHostRegister.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint]
rt.cudaHostUnregister.argtypes = [ctypes.c_void_p]
rt.cudaHostAlloc.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t, ctypes.c_uint]
rt.cudaFreeHost.argtypes = [ctypes.c_void_p]
rt.cudaFree(ctypes.c_void_p(0))  # create the context outside the timings
TOTAL = 8 << 30


def par(n, fn):
    ts = [threading.Thread(target=fn, args=(i,)) for i in range(n)]
    [t.start() for t in ts]; [t.join() for t in ts]


def host_alloc(threads):
    ptrs = [ctypes.c_void_p() for _ in range(threads)]
    t0 = time.time()
    par(threads, lambda i: rt.cudaHostAlloc(ctypes.byref(ptrs[i]), TOTAL // threads, 1))
    dt = time.time() - t0
    for p in ptrs: rt.cudaFreeHost(p)
    return dt


def register(threads):
    chunk = TOTAL // threads
    t0 = time.time()
    bufs = [libc.malloc(chunk) for _ in range(threads)]
    par(threads, lambda i: libc.memset(bufs[i], 0, chunk))  # ctypes releases the GIL
    t1 = time.time()
    par(threads, lambda i: rt.cudaHostRegister(bufs[i], chunk, 1))
    t2 = time.time()
    for b in bufs: rt.cudaHostUnregister(b)
    return t2 - t0, t1 - t0


for th in (1, 8):
    dt = host_alloc(th)
    print(json.dumps({"bench": "pin", "method": "cudaHostAlloc", "threads": th, "gib": 8, "s": round(dt, 3), "gbps": round(TOTAL / dt / 1e9, 2)}))
for th in (8, 16):
    dt, touch = register(th)
    print(json.dumps({"bench": "pin", "method": "malloc+touch+cudaHostRegister", "threads": th, "gib": 8, "s": round(dt, 3), "touch_s": round(touch, 3), "gbps": round(TOTAL / dt / 1e9, 2)}))
