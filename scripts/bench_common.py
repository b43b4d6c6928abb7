"""Shared benchmark harness: vanilla vs patched models in one process, interleaved rounds, medians.

CPU (default): the tiny random-weight checkpoints of the test bed. GPU (`--device cuda --full`): full-size
random-weight SD1.5 / SDXL UNets in fp16 built from ComfyUI's own classes (timings do not depend on the
weights' values), random conditioning of the right shapes.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from scripts.tiny_models.checkpoints import TINY_SD15_UNET, TINY_SDXL_UNET, COMMON_UNET  # noqa: E402
from scripts.tiny_models.env import DEFAULT_BASE, bootstrap  # noqa: E402

FULL_SD15_UNET = dict(COMMON_UNET, adm_in_channels=None, model_channels=320, num_res_blocks=[2, 2, 2, 2],
                      transformer_depth=[1, 1, 1, 1, 1, 1, 0, 0], channel_mult=[1, 2, 4, 4],
                      transformer_depth_middle=1, use_linear_in_transformer=False, context_dim=768, num_heads=8,
                      transformer_depth_output=[1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0])
FULL_SDXL_UNET = dict(COMMON_UNET, num_classes="sequential", adm_in_channels=2816, model_channels=320,
                      num_res_blocks=[2, 2, 2], transformer_depth=[0, 0, 2, 2, 10, 10], channel_mult=[1, 2, 4],
                      transformer_depth_middle=10, use_linear_in_transformer=True, context_dim=2048,
                      num_head_channels=64, transformer_depth_output=[0, 0, 0, 2, 2, 2, 10, 10, 10])
UNETS = {("sd15", False): TINY_SD15_UNET, ("sdxl", False): TINY_SDXL_UNET,
         ("sd15", True): FULL_SD15_UNET, ("sdxl", True): FULL_SDXL_UNET}
KIND = {"sd15": "SD15", "sdxl": "SDXL"}


def parse_args(description: str, add_arguments=None, **defaults) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    if add_arguments is not None:
        add_arguments(p)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--full", action="store_true", help="full-size random-weight UNets (GPU runs)")
    p.add_argument("--model", default=defaults.get("model", "sd15"), choices=["sd15", "sdxl"])
    p.add_argument("--size", type=int, default=None, help="image size in px (default 256, full: 512/1024)")
    p.add_argument("--batch", type=int, default=defaults.get("batch", 4))
    p.add_argument("--steps", type=int, default=defaults.get("steps", 8))
    p.add_argument("--cfg", type=float, default=defaults.get("cfg", 5.0))
    p.add_argument("--rounds", type=int, default=defaults.get("rounds", 5))
    p.add_argument("--counts-only", action="store_true",
                   help="print only the exact cost columns (FLOPs, op calls), no timing rounds")
    p.add_argument("--gpu-like", action="store_true",
                   help="count the op stream a GPU runs: ComfyUI's fused attention (attention_pytorch, "
                        "its default on NVIDIA) and no CPU score-matrix slicing (with --counts-only)")
    a = p.parse_args()
    if a.size is None:
        a.size = (512 if a.model == "sd15" else 1024) if a.full else 256
    bootstrap(cpu=a.device == "cpu")
    if a.gpu_like:
        use_fused_attention()
    return a


def use_fused_attention():
    """ComfyUI's attention_pytorch (scaled_dot_product_attention) for every attention call, and the
    pack told that scores are not materialised: the kernels and launches a GPU run has."""
    import comfy.ldm.modules.attention as attention
    from tests.pack import pack_module  # the benches import it first, before ComfyUI's tests/ is on sys.path
    attention.optimized_attention = attention.optimized_attention_masked = attention.attention_pytorch
    pack_module("attention.style_aligned").materialises_scores = lambda device: False


def load_model(args):
    """(ModelPatcher, positive, negative) for the benchmark's model."""
    import torch
    if not args.full:
        from scripts.tiny_models.checkpoints import load_checkpoint
        name = {"sd15": "atelier_tiny_sd15.safetensors", "sdxl": "atelier_tiny_sdxl.safetensors"}[args.model]
        model, clip, _ = load_checkpoint(os.path.join(DEFAULT_BASE, "models", "checkpoints", name))
        return model, encode(clip, "a watercolor painting of a house", args), encode(clip, "", args)
    import comfy.model_patcher
    from scripts.tiny_models.checkpoints import model_config_for
    device = torch.device(args.device)
    config = model_config_for(KIND[args.model], UNETS[(args.model, True)])
    base = config.get_model({}, device=device)
    base.diffusion_model.to(device=device, dtype=torch.float16)
    with torch.no_grad():
        gen = torch.Generator(device="cpu").manual_seed(0)
        for name, p in base.diffusion_model.named_parameters():
            if p.ndim == 1 and "norm" in name:
                p.fill_(1.0 if name.endswith("weight") else 0.0)
            else:
                p.copy_((torch.randn(p.shape, generator=gen) * 0.02).to(p))
    model = comfy.model_patcher.ModelPatcher(base, load_device=device, offload_device=device)
    return model, random_cond(args, 1), random_cond(args, 2)


def encode(clip, text, args):
    out = clip.encode_from_tokens(clip.tokenize(text), return_pooled=True, return_dict=True)
    cond = out.pop("cond")
    return [[cond, out]]


def random_cond(args, seed):
    import torch
    gen = torch.Generator().manual_seed(seed)
    dim = 768 if args.model == "sd15" else 2048
    extra = {}
    if args.model == "sdxl":
        extra = {"pooled_output": torch.randn(1, 1280, generator=gen), "width": args.size, "height": args.size}
    return [[torch.randn(1, 77, dim, generator=gen), extra]]


class PeakRSS:
    """Peak resident memory of this process above its level at start.

    On Linux exact: free heap memory is handed back to the system first (``malloc_trim``: otherwise what an
    earlier variant freed is reused without showing, and whichever runs first in a round looks costlier),
    then the kernel's high-water mark is reset (``/proc/self/clear_refs``) and read at the end (VmHWM), so no
    short peak is missed. Elsewhere: RSS sampled every 2 ms."""

    def __enter__(self):
        import gc
        gc.collect()
        self.exact = _reset_high_water_mark()
        if self.exact:
            self.start = _status_kib("VmRSS") * 1024
            return self
        import psutil
        self.proc = psutil.Process()
        self.start = self.peak = self.proc.memory_info().rss
        self.running = True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self):
        while self.running:
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.002)

    def __exit__(self, *exc):
        if self.exact:
            self.peak = _status_kib("VmHWM") * 1024
        else:
            self.running = False
            self.thread.join()
        self.extra = max(self.peak - self.start, 0)


def _reset_high_water_mark() -> bool:
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"no {field} in /proc/self/status")


def sample_once(model, positive, negative, args, latent=None):
    """Seconds per step and extra peak memory (bytes) of one sampling run."""
    import comfy.sample
    import torch
    if latent is None:
        latent = torch.zeros(args.batch, 4, args.size // 8, args.size // 8)
    noise = comfy.sample.prepare_noise(latent, 0)
    if args.device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    with PeakRSS() as rss:
        t0 = time.perf_counter()
        out = comfy.sample.sample(model, noise, args.steps, args.cfg, "euler", "normal", positive, negative,
                                  latent, seed=0, disable_pbar=True)
        if args.device == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
    extra = torch.cuda.max_memory_allocated() - base if args.device == "cuda" else rss.extra
    return seconds / args.steps, extra, out


def count_costs(variants: dict, positive, negative, args, latent=None) -> dict:
    """Exact FLOPs and aten operator calls of one sampling run per variant (see bench_counts)."""
    from scripts.bench_counts import Costs
    costs = {}
    for name, model in variants.items():
        with Costs() as c:
            sample_once(model, positive, negative, args, latent)
        costs[name] = c
    return costs


OTHERS_MAX = 0.5  # cores' worth of load from other processes that timed figures tolerate


def too_loaded(device: str = "cpu"):
    """A line saying why timed figures would be noise, or None: other processes share the cores being
    timed, i.e. the 1-minute load average less the bench's own torch threads (which it holds itself while
    it runs and warms up) exceeds OTHERS_MAX. A 2-thread bench alone on 2 cores reads a load of about 2.0-2.1
    by itself, so "load above the core count" alone would refuse it on a quiet machine. GPU timings are
    kept (the kernels run on the device), with the load noted by the caller."""
    import torch
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    others = load - min(torch.get_num_threads(), cores)
    if device == "cpu" and (others > OTHERS_MAX or load > cores + OTHERS_MAX):
        return (f"  no timed figures: load average {load:.1f} on {cores} cores, {max(others, 0):.1f} of it from other "
                f"processes (they share the cores timed here: the ratios would be noise); exact counts only. "
                f"Rerun on a quieter machine.")
    return None


def machine_line(device: str = "cpu") -> str:
    import torch
    load = os.getloadavg()
    return (f"  machine: {os.cpu_count()} cores, torch {torch.__version__} with {torch.get_num_threads()} threads, "
            f"load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}, {time.strftime('%Y-%m-%d %H:%M %Z')}")


def timed_rounds(variants: dict, run, rounds: int, baseline: str = "vanilla", device: str = "cpu"):
    """``run(name, model) -> (seconds per step, extra peak bytes)`` in ``rounds`` interleaved rounds
    (each round runs every variant once, so slow drifts of the machine hit all alike). Returns
    {name: (median s/step, median bytes, time ratio, memory ratio)}, or None (with the reason printed)
    when the machine is too loaded before or after the rounds."""
    refused = too_loaded(device)
    if refused:
        print(refused)
        return None
    times = {k: [] for k in variants}
    mems = {k: [] for k in variants}
    for _ in range(rounds):
        for name, model in variants.items():
            s, m = run(name, model)
            times[name].append(s)
            mems[name].append(m)
    refused = too_loaded(device)
    if refused:
        print(refused.replace("no timed figures:", "no timed figures: the load rose during the rounds:"))
        return None
    base_t = statistics.median(times[baseline])
    base_m = max(statistics.median(mems[baseline]), 1)
    out = {}
    for name in variants:
        t, m = statistics.median(times[name]), statistics.median(mems[name])
        out[name] = (t, m, t / base_t, m / base_m)
    return out


def print_timings(timings: dict):
    for name, (t, m, tr, mr) in timings.items():
        print(f"  {name:32s} {t:8.4f} s/step  x{tr:5.2f}   peak extra mem {m / 2**20:9.1f} MiB  x{mr:5.2f}")


def compare(variants: dict, positive, negative, args, baseline: str = "vanilla", latent=None,
            counts: bool = True) -> dict:
    """Run every variant once to warm up, then ``rounds`` interleaved rounds; print medians and ratios,
    then the exact per-step cost columns (FLOPs and aten operator calls vs the baseline). Returns
    {name: (time ratio, memory ratio)} (nothing with --counts-only or when the machine is too loaded
    for timing: see :func:`too_loaded`) and "costs": {name: Costs} (empty with ``counts=False``)."""
    from scripts.bench_counts import print_cost_table
    for model in variants.values():
        sample_once(model, positive, negative, args, latent)
    costs = count_costs(variants, positive, negative, args, latent) if counts else {}
    where = f"{args.model}{' full fp16' if args.full else ' tiny'} {args.size}px batch {args.batch} " \
            f"{args.steps} steps cfg {args.cfg} on {args.device}"
    if args.counts_only:
        print(where)
        print_cost_table(costs, args.steps, baseline)
        return {"costs": costs}
    print(f"{where}, median of {args.rounds} interleaved rounds")
    print(machine_line(args.device))
    timings = timed_rounds(variants, lambda name, model: sample_once(model, positive, negative, args, latent)[:2],
                           args.rounds, baseline, args.device)
    result = {}
    if timings is not None:
        print_timings(timings)
        result = {name: (tr, mr) for name, (_, _, tr, mr) in timings.items()}
    if costs:
        print_cost_table(costs, args.steps, baseline)
    result["costs"] = costs
    return result
