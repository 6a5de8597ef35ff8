"""diffusers' group offloading, the reference for `wan bench --offload ...` (issue 7): one transformer
forward per mode and latent frame count at the 480p grid (1, 5, 21 latent frames), random bf16
weights. Each mode builds and offloads the model once, then runs every frame count.
Modes: block_level N=1 with and without a stream, leaf_level with and without a stream.
Prints one JSON line per mode: time per forward (median of N after a warm-up), peak VRAM, setup time,
and host RSS growth (the pinned copies).

    PYTHONPATH=/tmp/site python3 benches/diffusers_offload.py PRESET LATENT_FRAMES[,LATENT_FRAMES...] [ITERS] [stream|nostream]

`stream` as the fourth argument runs only the two modes with a side stream (the 14B's setup takes
about half a minute per mode, most of it pinning), `nostream` only the two without.
Note: host_rss_gib is ru_maxrss growth, a high-water mark: after the first mode it reads 0 unless a
later mode needs more than an earlier one."""
import json
import resource
import statistics
import sys
import time

import torch

from diffusers_forward import config, inputs, random_model  # same directory


def rss_gib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main():
    preset, frame_list = sys.argv[1], [int(f) for f in sys.argv[2].split(",")]
    iters = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    only = sys.argv[4] if len(sys.argv) > 4 else None
    if only not in (None, "stream", "nostream"):
        sys.exit(f"fourth argument: stream or nostream, not {only!r}")
    cfg = config(preset)
    for mode, kw in [("block_level N=1", dict(offload_type="block_level", num_blocks_per_group=1)),
                     ("block_level N=1 stream", dict(offload_type="block_level", num_blocks_per_group=1, use_stream=True)),
                     ("leaf_level", dict(offload_type="leaf_level")),
                     ("leaf_level stream", dict(offload_type="leaf_level", use_stream=True))]:
        if (only == "stream" and not kw.get("use_stream")) or (only == "nostream" and kw.get("use_stream")):
            continue
        rss0 = rss_gib()
        model = random_model(cfg, "cpu")
        t0 = time.time()
        model.enable_group_offload(onload_device=torch.device("cuda"), offload_device=torch.device("cpu"), **kw)
        setup = time.time() - t0
        for frames in frame_list:
            run(model, cfg, preset, mode, frames, iters, setup, rss0)
        del model
        torch.cuda.empty_cache()


def run(model, cfg, preset, mode, frames, iters, setup, rss0):
    h, w = 60, 104
    args = inputs(cfg, frames, h, w)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    with torch.no_grad():
        model(**args)
        torch.cuda.synchronize()
        times = []
        for _ in range(iters):
            t0 = time.time()
            model(**args)
            torch.cuda.synchronize()
            times.append(time.time() - t0)
    print(json.dumps({"bench": "forward", "impl": "diffusers", "preset": preset, "mode": mode, "latent_frames": frames,
                      "tokens": frames * (h // 2) * (w // 2), "s": round(statistics.median(times), 4),
                      "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 3), "setup_s": round(setup, 2),
                      "host_rss_gib": round(rss_gib() - rss0, 2)}), flush=True)


if __name__ == "__main__":
    main()
