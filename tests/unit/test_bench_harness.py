"""The benchmarks' own rules: when a timed figure is refused, how peak memory is read, and how a family the
running ComfyUI lacks is reported. (Benches print figures; these rules decide whether those figures mean
anything.)"""
import os
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "scripts"))

from scripts import bench_common  # noqa: E402
from scripts.bench_common import PeakRSS, too_loaded  # noqa: E402


@pytest.fixture
def machine(monkeypatch):
    """Set the load average, core count and the bench's own torch threads."""
    def set_to(load, cores=2, threads=2):
        monkeypatch.setattr(bench_common.os, "getloadavg", lambda: (load, load, load))
        monkeypatch.setattr(bench_common.os, "cpu_count", lambda: cores)
        monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    return set_to


def test_a_bench_alone_is_not_refused_for_its_own_threads(machine):
    machine(load=2.1, cores=2, threads=2)
    assert too_loaded() is None


def test_other_processes_on_the_cores_refuse_timed_figures(machine):
    machine(load=2.8, cores=2, threads=2)
    line = too_loaded()
    assert line and "no timed figures" in line and "0.8 of it from other processes" in line


def test_a_single_threaded_bench_counts_only_its_own_thread(machine):
    machine(load=1.7, cores=2, threads=1)
    assert too_loaded() is not None
    machine(load=1.4, cores=2, threads=1)
    assert too_loaded() is None


def test_gpu_timings_are_kept_under_load(machine):
    machine(load=9.0, cores=2, threads=2)
    assert too_loaded("cuda") is None


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="the exact meter needs Linux /proc")
def test_peak_memory_is_what_the_block_holds_at_once_not_what_ran_before():
    for _ in range(3):  # what an earlier variant allocated and freed: the heap keeps it unless handed back,
        before = [torch.ones(4 * 2**20 // 4) for _ in range(16)]  # and reusing it would not show as a peak
        del before
    with PeakRSS() as meter:
        held = [torch.ones(8 * 2**20 // 4) for _ in range(4)]  # 32 MiB at once
        del held
        short = torch.ones(16 * 2**20 // 4)  # 16 MiB after those were freed: the peak stays 32
        del short
    assert meter.exact
    assert 30 <= meter.extra / 2**20 <= 40, meter.extra / 2**20


def test_a_family_without_a_bench_module_is_refused_by_name():
    from scripts import bench_families
    with pytest.raises(SystemExit, match="--family no_such_model: not one of sd15, sdxl, flux, sd35"):
        bench_families.family("no_such_model")
