r"""Training utilities: device choice, seeding, progress bars.

Used by every chapter that trains something. Method math never lives here.
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch

__all__ = ["device", "seed_everything", "make_generator", "progress"]


def device(prefer: str | None = None) -> torch.device:
    r"""The device to compute on.

    .. math::

        \text{device} = \begin{cases} \texttt{prefer} & \text{if given,} \\
            \texttt{\$GWF\_DEVICE} & \text{if set,} \\
            \texttt{cuda} & \text{if available,} \\
            \texttt{cpu} & \text{otherwise.} \end{cases}

    Parameters
    ----------
    prefer : str, optional
        An explicit device (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...); wins over everything else.

    Returns
    -------
    torch.device

    Used in: every chapter that trains (chapters 4-10), chapter 10 (CIFAR-10 on a GPU).
    """
    choice = prefer or os.environ.get("GWF_DEVICE")
    if choice:
        return torch.device(choice)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> torch.Generator:
    r"""Seed Python's, NumPy's and torch's global generators (CPU and CUDA) with one seed.

    .. math::

        \texttt{random} \leftarrow s, \quad \texttt{numpy} \leftarrow s \bmod 2^{32}, \quad
        \texttt{torch} \leftarrow s, \qquad \text{returns } G_s .

    Parameters
    ----------
    seed : int
        Non-negative integer ``s``.

    Returns
    -------
    torch.Generator
        A CPU generator seeded with ``s`` (pass it as ``generator=`` to the library's samplers).

    Raises
    ------
    ValueError
        If ``seed`` is not a non-negative integer.

    Used in: every chapter (first cell).
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return make_generator(seed)


def make_generator(seed: int | None = None, device: str | torch.device = "cpu") -> torch.Generator:
    r"""A ``torch.Generator`` on ``device`` seeded with ``seed``.

    .. math::

        G = \texttt{Generator(device)}, \quad G \leftarrow s \text{ (or } s \sim U\{0, \dots,
        2^{62} - 1\} \text{ from torch's global generator when } s \text{ is None)}.

    Parameters
    ----------
    seed : int, optional
        The seed; None draws one from torch's global generator (reproducible after
        :func:`seed_everything`).
    device : str or torch.device
        Device of the generator (samples drawn with it live there).

    Returns
    -------
    torch.Generator

    Used in: every chapter (independent streams for data, initial particles and noise).
    """
    g = torch.Generator(device=device)
    if seed is None:
        seed = int(torch.randint(0, 2**62, (1,)).item())
    g.manual_seed(int(seed))
    return g


def progress(iterable=None, *, total=None, desc=None, disable=None, **kwargs):
    r"""A tqdm progress bar (``tqdm.auto``: a widget in notebooks, text in a terminal).

    .. math::

        \text{disabled} = \texttt{disable} \text{ if given, else } (\texttt{\$GWF\_PROGRESS} = 0).

    Parameters
    ----------
    iterable : iterable, optional
        What to loop over.
    total : int, optional
        Number of iterations, when ``iterable`` has no length.
    desc : str, optional
        Label shown before the bar.
    disable : bool, optional
        True hides the bar; None (default) hides it when the environment variable
        ``GWF_PROGRESS`` is ``"0"`` (used by tests and by the notebook executor).
    **kwargs
        Passed to ``tqdm``.

    Returns
    -------
    tqdm.auto.tqdm
        Iterate over it as over ``iterable``; the bar is removed when done (``leave=False``).

    Used in: every loop longer than a few seconds (flows, JKO chains, training, the benchmark).
    """
    from tqdm.auto import tqdm

    if disable is None:
        disable = os.environ.get("GWF_PROGRESS", "1") == "0"
    return tqdm(iterable, total=total, desc=desc, disable=disable, leave=False, **kwargs)
