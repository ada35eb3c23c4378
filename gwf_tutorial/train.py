r"""Training utilities: device, seeding, progress bars, checkpoint pieces (RNG states, EMA, atomic save).

Used by every chapter that trains something. Method math never lives here.

**Where training runs (one rule).** Every training entry point of the library computes on the device of
its inputs: the network it trains and the samples it is given, which must share one device
(``jko.ParametricJKO``, ``sjko.SemiDualJKO``, ``drifting.train_drifting``, ``fflows.f_flow`` /
``vgrow`` / ``ept``, ``projected.projected_flow``). Nothing is moved behind the caller's back, so a cell that
builds its inputs on the CPU runs on the CPU on any machine, bit for bit. The one place that *chooses* a
device is :func:`device` (``$GWF_DEVICE``, else CUDA when present, else the CPU): a chapter that wants the
GPU moves its networks and data with ``.to(train.device())``; the CIFAR-10 trainer, whose input is a
configuration (it builds its own networks and loads its data), uses :func:`device` when the
configuration's ``device`` is empty (the default).
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch

__all__ = [
    "device",
    "seed_everything",
    "make_generator",
    "progress",
    "rng_state",
    "set_rng_state",
    "atomic_save",
    "ema_update",
]


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

    Used in: every chapter that trains (chapters 2-10: their ``dev``), chapter 10 (CIFAR-10 on a GPU).
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
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0):
        raise ValueError(f"seed must be a non-negative integer or None, got {seed!r}")
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


def rng_state(generator: torch.Generator | None = None) -> dict:
    r"""Every random state a training loop may draw from, as a ``torch.save``-able dict.

    .. math::

        \text{state} = (g,\ \text{torch CPU},\ \text{CUDA (all devices)},\ \text{NumPy},\ \text{Python}).

    Restored by :func:`set_rng_state`, a resumed run draws exactly the numbers the uninterrupted
    run would have drawn. The NumPy state is stored as tensors / numbers so that the dict loads with
    ``torch.load(..., weights_only=True)``.

    Parameters
    ----------
    generator : torch.Generator, optional
        A generator the loop draws from besides the global ones.

    Returns
    -------
    dict

    Used in: checkpoints of ``drifting.train_drifting`` and ``cifar10`` (chapters 8, 10).
    """
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    np_state = np.random.get_state()
    return {
        "generator": None if generator is None else generator.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "numpy": (
            np_state[0],
            torch.from_numpy(np_state[1].astype(np.int64)),
            int(np_state[2]),
            int(np_state[3]),
            float(np_state[4]),
        ),
        "python": random.getstate(),
    }


def set_rng_state(state: dict, generator: torch.Generator | None = None) -> None:
    r"""Restore the random states saved by :func:`rng_state` (and ``generator``'s, if given).

    .. math::

        \text{RNGs} \leftarrow \text{state}.

    Parameters
    ----------
    state : dict
        From :func:`rng_state`.
    generator : torch.Generator, optional
        Must be given exactly when it was given to :func:`rng_state`.

    Raises
    ------
    ValueError
        If ``state`` is not such a dict, or ``generator`` does not match how it was saved.

    Used in: checkpoint resume (chapters 8, 10).
    """
    if not isinstance(state, dict) or not {"generator", "torch", "numpy", "python"} <= set(state):
        raise ValueError("state must be a dict returned by train.rng_state")
    if (state["generator"] is None) != (generator is None):
        raise ValueError(
            "the state was saved with generator="
            f"{'None' if state['generator'] is None else 'a torch.Generator'}; pass the same kind"
        )
    if generator is not None:
        generator.set_state(state["generator"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys).astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def atomic_save(obj, path: str | os.PathLike) -> None:
    r"""``torch.save(obj, path)`` written atomically: to ``path.tmp``, then renamed over ``path``.

    .. math::

        \text{file} \leftarrow \text{obj} \quad \text{(all or nothing)}.

    An interruption (kill, power loss) never leaves a half-written checkpoint: the file holds the
    previous or the new state.

    Used in: every checkpoint of the library (``jko``, ``sjko``, ``drifting``, ``cifar10``).
    """
    path = os.fspath(path)
    tmp = f"{path}.tmp"
    torch.save(obj, tmp)
    os.replace(tmp, path)


@torch.no_grad()
def ema_update(ema: torch.nn.Module, net: torch.nn.Module, decay: float) -> None:
    r"""Exponential moving average of the parameters, in place.

    .. math::

        \bar\theta \leftarrow \beta\,\bar\theta + (1 - \beta)\,\theta, \qquad \beta = \texttt{decay};

    buffers (e.g. batch-norm statistics) are copied.

    Parameters
    ----------
    ema, net : nn.Module
        Same architecture.
    decay : float
        In ``[0, 1)``.

    Used in: S-JKO (chapter 7), the CIFAR-10 trainer (chapter 10).
    """
    if not (isinstance(decay, int | float) and 0 <= decay < 1):
        raise ValueError(f"decay must be in [0, 1), got {decay!r}")
    pe = list(ema.parameters())
    p = [t.detach() for t in net.parameters()]
    if len(pe) != len(p):
        raise ValueError(f"ema has {len(pe)} parameters, net has {len(p)}: not the same architecture")
    if pe:  # one fused launch per group on a GPU (the same numbers as a per-tensor lerp_)
        torch._foreach_lerp_(pe, p, 1.0 - decay)
    be, b = list(ema.buffers()), list(net.buffers())
    if len(be) != len(b):
        raise ValueError(f"ema has {len(be)} buffers, net has {len(b)}: not the same architecture")
    if be:
        torch._foreach_copy_(be, b)
