"""Pieces every benchmark script shares: paths, machine facts, process memory and CPU time, JSON output.

Benchmarks run as scripts (``python benchmarks/NAME.py``), so this folder is on ``sys.path`` and they
import this module as ``_common``. Memory readings use Linux ``/proc/self/status``.
"""

from __future__ import annotations

import math
import os
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"  # the markdown reports
DATA = ROOT / "gwf_tutorial" / "results"  # the JSON results, shipped with the package (chapters read them)
if str(ROOT) not in sys.path:  # the library, also when it is not installed
    sys.path.insert(0, str(ROOT))


def _cpu_model() -> str | None:
    """The CPU's model name (Linux), which decides the floating-point kernels that chaotic runs depend on."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), None)
    except OSError:
        return None


def machine_info(**extra) -> dict:
    """CPU, platform, memory, library versions and the load average now; ``extra`` is merged in."""
    import numpy as np
    import ot
    import torch

    info = dict(
        cpu_count=os.cpu_count(),
        processor=platform.processor() or platform.machine(),
        cpu_model=_cpu_model(),
        cpu_isa=torch.backends.cpu.get_cpu_capability(),  # the vector kernels torch dispatches to
        platform=platform.platform(),
        memory_gib=os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30,
        python=platform.python_version(),
        torch=torch.__version__,
        numpy=np.__version__,
        pot=ot.__version__,
        loadavg_start=list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    )
    info.update(extra)
    return info


def proc_status() -> dict[str, int]:
    """VmRSS and VmHWM (peak resident set since the last reset) of this process, in KiB."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, val = line.split(":")
                out[key] = int(val.split()[0])
    return out


def trim_heap() -> int:
    """Collect garbage and return freed heap to the OS (``malloc_trim``); the resident size after (KiB)."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    return proc_status()["VmRSS"]


def reset_peak() -> None:
    """Reset the peak-RSS mark VmHWM to the current resident size (Linux ``/proc/self/clear_refs``)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def cpu_seconds() -> float:
    """CPU time (user + system) of this process and its finished child processes."""
    import resource

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def json_safe(obj):
    """JSON-safe copy: infinite / NaN floats become ``None`` (the run's status says why)."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_results(folder, stem: str, res: dict, md: str, *, echo: bool = True) -> None:
    """Write ``res`` as ``stem.json`` (numpy scalars as numbers) and ``md`` as ``stem.md``.

    ``folder=None``: the committed places, the JSON into the package (``DATA``) and the report into
    ``RESULTS``; otherwise both into ``folder``."""
    import json

    json_dir, md_dir = (DATA, RESULTS) if folder is None else (Path(folder), Path(folder))
    for d in (json_dir, md_dir):
        d.mkdir(parents=True, exist_ok=True)
    (json_dir / f"{stem}.json").write_text(json.dumps(res, indent=1, default=float))
    (md_dir / f"{stem}.md").write_text(md)
    if echo:
        print(md)
    print(f"wrote {json_dir / stem}.json and {md_dir / stem}.md")
