"""Training utilities: device choice, seeding, progress bars, checkpoints.

Used by every chapter that trains something. Method math never lives here.
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch

__all__ = ["device", "seed_everything", "make_generator", "progress"]


def device(prefer: str | None = None) -> torch.device:
    """Return the device to compute on: ``prefer`` if given, else CUDA when present, else CPU.

    The environment variable ``GWF_DEVICE`` overrides the automatic choice (e.g. ``GWF_DEVICE=cpu``).
    """
    choice = prefer or os.environ.get("GWF_DEVICE")
    if choice:
        return torch.device(choice)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (CPU and CUDA); return a CPU ``torch.Generator`` seeded alike."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return make_generator(seed)


def make_generator(seed: int | None = None, device: str | torch.device = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device``, seeded with ``seed`` (or from torch's global RNG if None)."""
    g = torch.Generator(device=device)
    if seed is None:
        seed = int(torch.randint(0, 2**62, (1,)).item())
    g.manual_seed(int(seed))
    return g


def progress(iterable=None, *, total=None, desc=None, disable=None, **kwargs):
    """A tqdm progress bar (``tqdm.auto``: a widget in notebooks, text in a terminal).

    Disabled when ``disable=True`` or the environment variable ``GWF_PROGRESS=0``.
    """
    from tqdm.auto import tqdm

    if disable is None:
        disable = os.environ.get("GWF_PROGRESS", "1") == "0"
    return tqdm(iterable, total=total, desc=desc, disable=disable, leave=False, **kwargs)
