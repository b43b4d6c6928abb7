"""Device-independent cost columns for the benchmarks: floating-point operations and aten operator calls.

Timings on a shared CPU are noisy and say little about a GPU, where a patch costs mostly in extra
maths (FLOPs) and in extra kernel launches (one per aten operator call). Both are counted exactly,
with no GPU, by running one sampling under two ``TorchDispatchMode``s:

- ``torch.utils.flop_counter.FlopCounterMode`` (matmuls, convolutions, attention), with a formula
  added for the CPU fused attention kernel, which it does not count by itself;
- :class:`OpCounter`: every aten operator call reaching the dispatcher (views included: each is a
  Python-to-C++ round trip and, on a GPU, a launch or at least host work), plus the host syncs among
  them (``aten._local_scalar_dense``: ``.item()``, ``float(tensor)``, data-dependent shapes).
"""
from __future__ import annotations

import collections

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

SYNC_OPS = {"aten._local_scalar_dense.default", "aten.nonzero.default", "aten.masked_select.default"}


class OpCounter(TorchDispatchMode):
    """Counts aten operator calls (and host syncs among them) made while it is active."""

    def __init__(self):
        super().__init__()
        self.calls = 0
        self.syncs = 0
        self.by_op: collections.Counter = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.calls += 1
        name = str(func)
        self.by_op[name] += 1
        if name in SYNC_OPS:
            self.syncs += 1
        return func(*args, **(kwargs or {}))


def _cpu_flash_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _custom_flops() -> dict:
    mapping = {}
    cpu_flash = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if cpu_flash is not None:
        mapping[cpu_flash] = _cpu_flash_flops
    return mapping


def _attention_flops(counts: dict, slot: str) -> int:
    """FLOPs of the attention products (scores and weighted values, not the projections) inside
    every ``<slot>`` module (attn1 = self-attention, attn2 = cross-attention). Meaningful for an
    unpatched model only: an attention replace runs outside the module, in its transformer block."""
    total = 0
    for module, by_op in counts.items():
        if module.endswith("." + slot):
            total += sum(n for op, n in by_op.items() if str(op).split(".")[-1] in ATTENTION_OPS)
    return total


ATTENTION_OPS = {"bmm", "baddbmm", "_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_flash_attention",
                 "_scaled_dot_product_efficient_attention", "_scaled_dot_product_cudnn_attention"}


class Costs:
    """FLOPs, operator calls and host syncs of whatever runs inside ``with Costs() as c:``."""

    def __enter__(self):
        self._flops = FlopCounterMode(display=False, custom_mapping=_custom_flops())
        self._ops = OpCounter()
        self._flops.__enter__()
        self._ops.__enter__()
        return self

    def __exit__(self, *exc):
        self._ops.__exit__(*exc)
        self._flops.__exit__(*exc)
        self.flops = self._flops.get_total_flops()
        counts = self._flops.get_flop_counts()
        self.flop_counts = counts
        self.attn1_flops, self.attn2_flops = _attention_flops(counts, "attn1"), _attention_flops(counts, "attn2")
        # every attention product wherever it runs (DiT attention runs outside attn1/attn2 modules)
        self.attention_flops = sum(n for op, n in counts.get("Global", {}).items()
                                   if str(op).split(".")[-1] in ATTENTION_OPS)
        self.calls, self.syncs, self.by_op = self._ops.calls, self._ops.syncs, self._ops.by_op

    def module_attention_flops(self, slot: str) -> int:
        """The attention products inside every module named ``*.<slot>`` (e.g. Wan's ``self_attn``)."""
        return _attention_flops(self.flop_counts, slot)


def print_cost_table(costs: dict, per: int, baseline: str = "vanilla", unit: str = "step"):
    """Per ``unit`` (costs divided by ``per``): GFLOP, op calls, host syncs, and ratios to ``baseline``."""
    base = costs[baseline]
    print(f"  cost per {unit} (exact counts, device-independent; ratios vs {baseline}):")
    for name, c in costs.items():
        flop_ratio = c.flops / max(base.flops, 1)
        call_ratio = c.calls / max(base.calls, 1)
        print(f"  {name:32s} {c.flops / per / 1e9:9.3f} GFLOP x{flop_ratio:5.3f}   {c.calls / per:8.0f} op calls "
              f"x{call_ratio:5.3f}   {c.syncs / per:5.1f} host syncs")
    print(f"  ({baseline}'s attention products per {unit}: self {base.attn1_flops / per / 1e9:.3f}, cross "
          f"{base.attn2_flops / per / 1e9:.3f} GFLOP; FLOPs count matrix products, convolutions and attention)")


def print_minimum(name: str, costs: dict, minimum_flops: float, why: str, baseline: str = "vanilla",
                  timing: dict | None = None):
    """The method's own FLOP minimum (derived analytically from the baseline's counts) beside what it
    does; with ``timing`` ({name: (time ratio, memory ratio)} measured in the same run) also the measured
    step time against that minimum: time ratio / minimum FLOP ratio, 1.00 where time grows no faster
    than the unavoidable FLOPs (how far the control is from its limit)."""
    base = costs[baseline].flops
    floor = minimum_flops / base
    line = f"  {name}: FLOPs x{costs[name].flops / base:.3f} vs its minimum x{floor:.3f} ({why})"
    if timing and name in timing:
        line += f"; step time x{timing[name][0]:.3f} = {timing[name][0] / floor:.3f}x the minimum's"
    print(line)
