"""A one-paragraph description of the machine a benchmark ran on."""

from __future__ import annotations

import os
import platform

import torch


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_description() -> str:
    """CPU model, cores, memory, OS, Python, torch and its intra-op thread count."""
    try:
        memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        memory_gb = float("nan")
    return (
        f"{cpu_model()}, {os.cpu_count()} cores, {memory_gb:.0f} GiB; {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}; torch {torch.__version__} ({torch.get_num_threads()} intra-op threads)"
    )


def load_average() -> str:
    """The 1, 5 and 15 minute load averages: how busy the machine was while a benchmark ran."""
    return " ".join(f"{x:.1f}" for x in os.getloadavg())
