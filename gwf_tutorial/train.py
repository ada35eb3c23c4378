"""Training utilities: device, seeding, progress bars, EMA, and the library's one checkpoint format.

A checkpoint (:func:`save_checkpoint`, :func:`load_checkpoint`) is one header line ``GWFCKPT <version>
<n_bytes> <sha256>``, a JSON line (the trainer's ``kind`` and hyperparameters ``config``), then the state
written by ``torch.save``; written atomically, its length and SHA-256 are checked before anything is
unpickled (``weights_only=True``). Training entry points compute on the device of their inputs; only
:func:`device` *chooses* one.

Used in: every chapter (seeds and generators) and every trainer of the library.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import random
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

from gwf_tutorial._validation import check_interval

__all__ = ["device", "seed_everything", "make_generator", "progress", "rng_state", "set_rng_state",
           "atomic_save", "save_checkpoint", "load_checkpoint", "ema_update",
           "DistInfo", "init_distributed"]  # fmt: skip


def device(prefer: str | None = None) -> torch.device:
    """The device to compute on: ``prefer``, else ``$GWF_DEVICE``, else CUDA if available, else the CPU.

    Used in: chapters 2-10.
    """
    default = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(prefer or os.environ.get("GWF_DEVICE") or default)


def seed_everything(seed: int) -> torch.Generator:
    """Seed the global generators of Python, NumPy (``seed mod 2**32``) and torch; returns a CPU one alike.

    Used in: chapters 1-11.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return make_generator(seed)


def make_generator(seed: int | None = None, device: str | torch.device = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with ``seed`` (None: drawn from torch's global generator).

    Used in: chapters 1-7, 9 and 11.
    """
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0):
        raise ValueError(f"seed must be a non-negative integer or None, got {seed!r}")
    g = torch.Generator(device=device)
    if seed is None:
        seed = int(torch.randint(0, 2**62, (1,)).item())
    g.manual_seed(int(seed))
    return g


def progress(iterable=None, *, total=None, desc=None, disable=None, **kwargs):
    """A ``tqdm.auto`` bar over ``iterable``, removed when done; ``disable=None`` hides it when
    ``$GWF_PROGRESS`` is ``"0"`` (tests, the notebook executor); ``**kwargs`` go to ``tqdm``.

    Used in: :mod:`gwf_tutorial.flows`, :mod:`gwf_tutorial.fflows`, :mod:`gwf_tutorial.metrics` and every
    trainer.
    """
    from tqdm.auto import tqdm

    if disable is None:
        disable = os.environ.get("GWF_PROGRESS", "1") == "0"
    return tqdm(iterable, total=total, desc=desc, disable=disable, leave=False, **kwargs)


def rng_state(generator: torch.Generator | None = None) -> dict:
    """Every random state a training loop may draw from (``generator``, torch CPU and CUDA, NumPy, Python), as
    a dict loadable with ``weights_only=True``, for :func:`set_rng_state`.

    Used in: :mod:`gwf_tutorial.drifting`, :class:`~gwf_tutorial.trainer.ResumableRun`.
    """
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    np_state = np.random.get_state()
    return {
        "generator": None if generator is None else generator.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]),
                  int(np_state[3]), float(np_state[4])),  # fmt: skip
        "python": random.getstate(),
    }


def set_rng_state(state: dict, generator: torch.Generator | None = None) -> None:
    """Restore the states saved by :func:`rng_state`; ``generator`` must be given exactly when it was there.

    Used in: :mod:`gwf_tutorial.drifting`, :class:`~gwf_tutorial.trainer.ResumableRun`.
    """
    if not isinstance(state, dict) or not {"generator", "torch", "numpy", "python"} <= set(state):
        raise ValueError("state must be a dict returned by train.rng_state")
    if (state["generator"] is None) != (generator is None):
        saved = "None" if state["generator"] is None else "a torch.Generator"
        raise ValueError(f"the state was saved with generator={saved}; pass the same kind")
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
    """Write ``obj`` (bytes as they are, else by ``torch.save``) to ``path`` through ``path.tmp``, flushed,
    then renamed: an interruption leaves the old or the new content.

    Used in: :func:`~gwf_tutorial.train.save_checkpoint`.
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
    if isinstance(value, float | np.floating | np.integer):
        value = value.item() if isinstance(value, np.generic) else value
        return "nan" if math.isnan(value) else value
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
    """Save a trainer's ``state`` (tensors, state dicts, numbers, strings and containers of them) atomically,
    with ``kind`` (the trainer's name) and ``config`` (its hyperparameters, as JSON).

    Used in: :mod:`gwf_tutorial.trainer` (every trainer of the library), :mod:`gwf_tutorial.jko`,
    :mod:`gwf_tutorial.cifar10`.
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


def load_checkpoint(path: str | os.PathLike, *, kind: str | None = None, config: dict | None = None,
                    ignore: Iterable[str] = (), map_location="cpu") -> tuple[dict, dict]:  # fmt: skip
    """Read a file of :func:`save_checkpoint`: ``(state, saved_config)``. Raises ``ValueError`` naming the
    file (never modified) when it is missing, damaged, not a checkpoint, of another version or ``kind``, or
    when ``config`` differs from the saved one on a key not in ``ignore`` (each such key with both values).

    Used in: :mod:`gwf_tutorial.trainer` (every trainer of the library).
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
        saved, now, a = meta["config"], _jsonable(config), "(absent)"
        diff = [f"{k}: {saved.get(k, a)!r} in the checkpoint, {now.get(k, a)!r} now"
                for k in sorted((set(saved) | set(now)) - set(ignore)) if saved.get(k, a) != now.get(k, a)]
        if diff:
            raise ValueError(f"checkpoint {path!r} was saved with other hyperparameters; resume with the "
                             "same ones or use another file: " + "; ".join(diff))  # fmt: skip
    try:
        state = torch.load(io.BytesIO(payload), map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - reported with the file's name
        raise ValueError(f"checkpoint {path!r} holds a state torch cannot load: {err}") from err
    return state, meta["config"]


@torch.no_grad()
def ema_update(ema: torch.nn.Module, net: torch.nn.Module, decay: float) -> None:
    r"""EMA :math:`\bar\theta \leftarrow \beta\,\bar\theta + (1 - \beta)\,\theta`, :math:`\beta` = ``decay``
    :math:`\in [0, 1)`, of ``net``'s parameters into ``ema`` (same architecture), in place; buffers copied.

    Used in: :mod:`gwf_tutorial.trainer`.
    """
    decay = check_interval(decay, "decay", closed="left")
    pe, p = list(ema.parameters()), [t.detach() for t in net.parameters()]
    be, b = list(ema.buffers()), list(net.buffers())
    for what, mine, theirs in (("parameters", pe, p), ("buffers", be, b)):
        if len(mine) != len(theirs):
            raise ValueError(f"ema has {len(mine)} {what}, net has {len(theirs)}: not the same architecture")
    if pe:  # one fused launch per group on a GPU (the same numbers as a per-tensor lerp_)
        torch._foreach_lerp_(pe, p, 1.0 - decay)
    if be:
        torch._foreach_copy_(be, b)


@dataclass
class DistInfo:
    """Process group facts (``backend`` None: one process) and the collectives a DDP run needs.

    Used in: :func:`~gwf_tutorial.train.init_distributed`, :class:`~gwf_tutorial.trainer.ResumableRun`."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    backend: str | None = None
    is_main = property(lambda self: self.rank == 0)
    distributed = property(lambda self: self.world_size > 1)

    def barrier(self) -> None:
        """Wait for every process (nothing for one process)."""
        if self.distributed:
            torch.distributed.barrier()

    def gather(self, obj) -> list:
        """``obj`` of every process, in rank order (``[obj]`` for one process)."""
        out = [obj] * self.world_size
        if self.distributed:
            torch.distributed.all_gather_object(out, obj)
        return out

    def wrap(self, net: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        """``net`` as a DDP replica on ``device`` when distributed, else ``net`` itself."""
        if not self.distributed:
            return net
        ids = [device.index] if device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(net, device_ids=ids, broadcast_buffers=False)


def init_distributed(env: dict | None = None, *, cuda: bool | None = None, init: bool = True) -> DistInfo:
    r"""Read ``torchrun``'s ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE`` (``env``, default ``os.environ``) and
    start the process group (gloo on CPU, NCCL on CUDA; ``init=False``: only parse). A ValueError for
    inconsistent variables; ``WORLD_SIZE`` <= 1: one process, nothing started.

    Used in: :meth:`~gwf_tutorial.trainer.ResumableRun.command_line`.
    """
    env = os.environ if env is None else env
    cuda = device().type == "cuda" if cuda is None else bool(cuda)
    try:
        world, rank = int(env.get("WORLD_SIZE", "1")), int(env.get("RANK", "0"))
        local = int(env.get("LOCAL_RANK", str(rank)))
    except ValueError as err:
        raise ValueError(f"RANK / LOCAL_RANK / WORLD_SIZE must be integers: {err}") from err
    if world < 1 or not 0 <= rank < world or local < 0:
        raise ValueError(f"inconsistent torchrun variables: RANK={rank}, LOCAL_RANK={local}, "
                         f"WORLD_SIZE={world}")  # fmt: skip
    if world == 1:
        return DistInfo()
    info = DistInfo(rank=rank, local_rank=local, world_size=world, backend="nccl" if cuda else "gloo")
    if init:
        if cuda:
            torch.cuda.set_device(local)
        if not torch.distributed.is_initialized():
            torch.distributed.init_process_group(backend=info.backend, init_method="env://")
    return info
