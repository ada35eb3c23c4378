r"""Training utilities: device, seeding, progress bars, EMA, and the library's one checkpoint format.

Used by every chapter that trains something. Method math never lives here.

**Checkpoints (one format).** Every trainer of the library (``jko.ParametricJKO``, ``sjko.SemiDualJKO``,
``drifting.train_drifting``, the CIFAR-10 ``Trainer``) saves with :func:`save_checkpoint` and resumes with
:func:`load_checkpoint`. A file is one header line, ``GWFCKPT <version> <n_bytes> <sha256>``, then a JSON
line (the trainer's ``kind`` and its hyperparameters, ``config``), then the state serialised by
``torch.save`` (networks, optimisers, schedules, EMA, counters, random states from :func:`rng_state`).
It is written atomically (:func:`atomic_save`); on reading, the length and the SHA-256 of everything after
the header line are checked before anything is unpickled (with ``weights_only=True``), so a damaged file
(flipped bytes, truncated, empty, not a checkpoint) is refused with an error naming it, and a resume with
other hyperparameters is refused with the differing keys.

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

import hashlib
import io
import json
import math
import os
import random
from collections.abc import Iterable

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
    "save_checkpoint",
    "load_checkpoint",
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
    r"""Write ``obj`` to ``path`` atomically: to ``path.tmp``, flushed to disk, then renamed over ``path``.

    .. math::

        \text{file} \leftarrow \text{obj} \quad \text{(all or nothing)}.

    An interruption (kill, power loss) never leaves a half-written file: it holds the previous or the
    new content.

    Parameters
    ----------
    obj : bytes or object
        Bytes are written as they are; anything else with ``torch.save``.
    path : str or os.PathLike

    Used in: :func:`save_checkpoint` (every checkpoint of the library, chapters 4, 7, 8, 10).
    """
    path = os.fspath(path)
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        if isinstance(obj, bytes | bytearray | memoryview):
            f.write(obj)
        else:
            torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


_MAGIC = b"GWFCKPT"
#: Version of the checkpoint format written by :func:`save_checkpoint`.
CHECKPOINT_VERSION = 1


def _jsonable(value):
    """``value`` as plain JSON data: tuples become lists, NaN a string, objects their repr or type name."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float | np.floating):
        return "nan" if math.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, torch.dtype | torch.device):
        return str(value)
    if isinstance(value, torch.Tensor):
        return f"Tensor{tuple(value.shape)}"
    text = repr(value)
    if " at 0x" in text:  # no meaningful repr: the name of the function or class
        return getattr(value, "__qualname__", type(value).__qualname__)
    return text


def _digest(version: int, body: bytes) -> str:
    return hashlib.sha256(_MAGIC + b" %d " % version + body).hexdigest()


def save_checkpoint(path: str | os.PathLike, state: dict, *, kind: str, config: dict) -> None:
    r"""Save a trainer's state in the library's checkpoint format, atomically.

    .. math::

        \text{file} = \texttt{GWFCKPT}\ v\ n\ h \,\|\, \text{JSON}(\text{kind}, \text{config})
        \,\|\, \texttt{torch.save}(\text{state}), \qquad h = \mathrm{SHA256}(\text{all after the
        first line}),\ n = \text{its length}.

    Parameters
    ----------
    path : str or os.PathLike
        The file; its folder must exist. Written through ``path.tmp`` (:func:`atomic_save`).
    state : dict
        Tensors, state dicts, numbers, strings, lists and dicts of them (loadable with
        ``weights_only=True``): networks, optimisers, schedulers, EMA, counters, :func:`rng_state`.
    kind : str
        Which trainer wrote it (e.g. ``"jko.ParametricJKO"``); :func:`load_checkpoint` checks it.
    config : dict
        The hyperparameters, compared on resume. Values are stored as JSON (tuples as lists, objects
        by their repr, or their type name when the repr is only an address).

    Raises
    ------
    TypeError
        If ``state`` or ``config`` is not a dict or ``kind`` not a string.

    Used in: ``jko.ParametricJKO.save``, ``sjko.SemiDualJKO.save``, ``drifting.train_drifting``,
    ``cifar10.Trainer.save`` (chapters 4, 7, 8, 10).
    """
    for value, name, typ in ((state, "state", dict), (config, "config", dict), (kind, "kind", str)):
        if not isinstance(value, typ):
            raise TypeError(f"{name} must be a {typ.__name__}, got {type(value).__name__}")
    header = json.dumps({"kind": kind, "config": _jsonable(config)}, sort_keys=True).encode()
    buf = io.BytesIO()
    torch.save(state, buf)
    body = header + b"\n" + buf.getvalue()
    digest = _digest(CHECKPOINT_VERSION, body).encode()
    first = b"%s %d %d %s\n" % (_MAGIC, CHECKPOINT_VERSION, len(body), digest)
    atomic_save(first + body, path)


def _config_diff(saved: dict, current: dict, ignore: Iterable[str]) -> list[str]:
    skip = set(ignore)
    return [
        f"{k}: {saved.get(k, '(absent)')!r} in the checkpoint, {current.get(k, '(absent)')!r} now"
        for k in sorted(set(saved) | set(current))
        if k not in skip and saved.get(k, "(absent)") != current.get(k, "(absent)")
    ]


def _verified_body(path: str, data: bytes) -> bytes:
    """The part after the header line, once its length and SHA-256 match the header's."""

    def damaged(what: str) -> ValueError:
        return ValueError(f"checkpoint {path!r} {what}; refused (the file is left in place)")

    if not data:
        raise damaged("is empty (0 bytes)")
    line, newline, body = data.partition(b"\n")
    parts = line.split(b" ")
    if parts[0] != _MAGIC:
        zip_hint = " (a zip archive: a plain torch.save file, not written by save_checkpoint)"
        raise damaged(f"is not a gwf_tutorial checkpoint{zip_hint if data[:2] == b'PK' else ''}")
    try:
        version, n_bytes, digest = int(parts[1]), int(parts[2]), parts[3].decode("ascii")
    except (IndexError, ValueError, UnicodeDecodeError):
        raise damaged("has a damaged header line") from None
    if len(parts) != 4 or not newline:
        raise damaged("has a damaged header line")
    if len(body) != n_bytes:
        raise damaged(f"is truncated or damaged: {len(body)} bytes after the header, {n_bytes} were written")
    if _digest(version, body) != digest:
        raise damaged("is damaged: its SHA-256 differs from the one written with it (changed bytes)")
    if version != CHECKPOINT_VERSION:
        raise damaged(f"has format version {version}; this gwf_tutorial reads version {CHECKPOINT_VERSION}")
    return body


def load_checkpoint(
    path: str | os.PathLike,
    *,
    kind: str | None = None,
    config: dict | None = None,
    ignore: Iterable[str] = (),
    map_location="cpu",
) -> tuple[dict, dict]:
    r"""Read a file written by :func:`save_checkpoint`, refusing a damaged one or other hyperparameters.

    .. math::

        \text{file} \mapsto (\text{state}, \text{config}) \quad \text{if }
        \mathrm{SHA256}(\text{body}) = h,\ |\text{body}| = n,\ \text{kind and config agree}.

    Parameters
    ----------
    path : str or os.PathLike
    kind : str, optional
        The trainer expected (the ``kind`` given to :func:`save_checkpoint`).
    config : dict, optional
        The hyperparameters of the run that resumes: every key (but ``ignore``) must equal the saved one.
    ignore : iterable of str
        Keys of ``config`` that may change on resume (operational settings: output folder, log period).
    map_location : default "cpu"
        Passed to ``torch.load``; the CPU keeps random states usable (``load_state_dict`` moves
        parameters and optimiser states to their network's device).

    Returns
    -------
    (dict, dict)
        The state and the saved configuration.

    Raises
    ------
    ValueError
        Naming the file: it does not exist, is empty, truncated, changed (SHA-256 mismatch), not a
        checkpoint, of another format version or ``kind``, or saved with other hyperparameters (each
        differing key with its saved and current value). The file is never modified.

    Used in: ``jko.ParametricJKO.load``, ``sjko.SemiDualJKO.load``, ``drifting.train_drifting``,
    ``cifar10`` (``--resume``, ``load_generator``) (chapters 4, 7, 8, 10).
    """
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"checkpoint {path!r} does not exist or is not a file")
    with open(path, "rb") as f:
        body = _verified_body(path, f.read())
    header, _, payload = body.partition(b"\n")
    meta = json.loads(header)
    if kind is not None and meta["kind"] != kind:
        raise ValueError(f"checkpoint {path!r} was written by {meta['kind']}, not by {kind}")
    if config is not None:
        diff = _config_diff(meta["config"], _jsonable(config), ignore)
        if diff:
            raise ValueError(
                f"checkpoint {path!r} was saved with other hyperparameters; resume with the same ones or "
                "use another file: " + "; ".join(diff)
            )
    try:
        state = torch.load(io.BytesIO(payload), map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - reported with the file's name
        raise ValueError(f"checkpoint {path!r} holds a state torch cannot load: {err}") from err
    return state, meta["config"]


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
