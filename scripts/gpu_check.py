r"""GPU check of the CIFAR-10 trainer: throughput, host syncs, profile, resume, torchrun, objectives.

.. code-block:: bash

    python scripts/gpu_check.py                              # on one GPU, at most ~5 minutes
    python scripts/gpu_check.py --out $OUT/gpu_check.json    # write elsewhere
    python scripts/gpu_check.py --dry-run --out /tmp/g.json  # the same code path on a CPU, in seconds

What it runs (``gwf_tutorial.cifar10.Trainer`` on **synthetic** 32x32 images, the ``small`` nets, batch 256;
``--dry-run``: 8x8 images, the ``tiny`` nets, batch 8, fractions of a second, on the CPU):

1. ``throughput`` -- each of ``jko-kldv``, ``jko-mmd``, ``sjko``, ``drifting`` with bf16 autocast for
   ``--seconds`` of steady state after ``--warmup`` iterations (start-up, i.e. building the trainer and the
   warm-up iterations with cuDNN autotuning, timed apart), and ``jko-kldv`` once more in fp32;
2. ``host_reads`` -- tensor-to-host reads (``.item()``, ``float()``, ``bool()``, ...) made by library code in
   one ``train_step`` (each one is a host synchronisation on a GPU), with their call sites;
3. ``profile`` -- ``torch.profiler`` over ``--profile-steps`` steps per method: top kernels by self device
   time (CPU time in a dry run) and counts of synchronising events per step;
4. ``resume`` -- a CLI run killed with SIGKILL after its first checkpoint, resumed with ``--resume`` (no
   ``--time-budget``: it must run to the end), compared with an uninterrupted run (bit for bit, or the
   largest parameter difference);
5. ``torchrun`` -- ``torchrun --nproc_per_node 1 -m gwf_tutorial.cifar10`` (a subprocess);
6. ``objectives`` -- ``benchmarks/objectives.py --quick`` (a subprocess) when that file exists, else a
   ``present: false`` entry.

JSON schema (``gwf_tutorial.gpu_check/1``; read by :func:`gwf_tutorial.benchmark.throughput_table`)::

    schema: str, dry_run: bool, device: str, torch: str, cuda: str | null, created: str, argv: list,
    settings: {net, recipe_net, batch_size, image_size, data, seconds, warmup, profile_steps},
    throughput: [{method, precision ("bf16" | "fp32"), autocast_active, startup_s, warmup_iters,
                  steady_iters, steady_s,
                  steady_it_per_s, peak_memory_gib | null}],
    host_reads: {method: {per_step: float, sites: {"file:line": count per step}}},
    profile: {method: {steps, time_unit: "device" | "cpu", top: [{name, self_ms_per_step, percent}],
                       syncs_per_step: {event name: count}}},
    resume: {killed_at_step, total_iters, resumed_to_step, bit_exact, max_abs_param_diff, note},
    torchrun: {returncode, seconds, status, step, output_tail},
    objectives: {present: bool, returncode?, seconds?, output_tail?, note?},
    seconds_total: float

Commit the JSON of a GPU run at ``gwf_tutorial/results/gpu_check.json``; chapter 10 reads it
(``benchmark.load_results("gpu_check")``) and states the hours of each recipe at that speed.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gwf_tutorial import benchmark, cifar10, train  # noqa: E402

_SYNC_EVENTS = (
    "cudaStreamSynchronize",
    "cudaDeviceSynchronize",
    "cudaEventSynchronize",
    "aten::_local_scalar_dense",
)


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _config(method: str, args, out: str, amp: bool = True) -> cifar10.Config:
    common = {
        "fid_samples": 0,
        "progress": False,
        "out": out,
        "ckpt_every": 10**9,
        "save_every": 0,
        "amp": amp,
    }
    if args.dry_run:
        return cifar10.smoke_config(
            method, image_size=8, n_synthetic=64, batch_size=8, device="cpu", **common
        )
    return cifar10.make_config(
        method, "small", data="synthetic", n_synthetic=5000, image_size=32, batch_size=256, feature="standin",
        **common,
    )  # fmt: skip


def measure(method: str, args, out: str, amp: bool = True) -> tuple[dict, cifar10.Trainer]:
    """Start-up (trainer + warm-up iterations) and steady-state iterations per second of ``train_step``."""
    t0 = time.perf_counter()
    tr = cifar10.Trainer(_config(method, args, out, amp))
    dev = tr.device
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    for _ in range(args.warmup):
        tr.train_step()
    _sync(dev)
    t1 = time.perf_counter()
    n = 0
    while time.perf_counter() - t1 < args.seconds or n < 2:  # the host runs ahead; one sync at the end
        tr.train_step()
        n += 1
    _sync(dev)
    steady = time.perf_counter() - t1
    rec = {
        "method": method,
        "precision": "bf16" if amp else "fp32",
        "autocast_active": tr.amp,  # False on a CPU (dry run): bf16 autocast is CUDA only
        "startup_s": round(t1 - t0, 3),
        "warmup_iters": args.warmup,
        "steady_iters": n,
        "steady_s": round(steady, 3),
        "steady_it_per_s": round(n / steady, 3),
        "peak_memory_gib": round(torch.cuda.max_memory_allocated(dev) / 2**30, 3)
        if dev.type == "cuda"
        else None,
    }
    return rec, tr


def host_reads(tr: cifar10.Trainer, steps: int = 2) -> dict:
    """Tensor-to-host reads made by non-torch code during ``steps`` calls of ``train_step`` (per step)."""
    torch_dir = os.path.dirname(torch.__file__)
    sites: collections.Counter = collections.Counter()
    names = ("__bool__", "__float__", "__int__", "__index__", "item", "tolist", "numpy", "cpu")
    saved = {n: getattr(torch.Tensor, n) for n in names}

    def wrap(name, fn):
        def reader(self, *a, **k):
            caller = traceback.extract_stack(limit=2)[0]
            on_host = self.device.type == "cpu" and tr.device.type != "cpu"  # no sync: already on the host
            if not caller.filename.startswith(torch_dir) and not on_host:
                sites[f"{Path(caller.filename).name}:{caller.lineno}"] += 1
            return fn(self, *a, **k)

        return reader

    try:
        for n, fn in saved.items():
            setattr(torch.Tensor, n, wrap(n, fn))
        for _ in range(steps):
            tr.train_step()
    finally:
        for n, fn in saved.items():
            setattr(torch.Tensor, n, fn)
    return {
        "per_step": sum(sites.values()) / steps,
        "sites": {k: v / steps for k, v in sites.most_common()},
    }


def profile_steps(tr: cifar10.Trainer, steps: int, top: int = 10) -> dict:
    """``torch.profiler`` summary of ``steps`` training steps: top kernels and synchronising events."""
    from torch.profiler import ProfilerActivity, profile

    cuda = tr.device.type == "cuda"
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=acts) as prof:
        for _ in range(steps):
            tr.train_step()
        _sync(tr.device)
    events = prof.key_averages()

    def self_time(e) -> float:  # microseconds
        if cuda:
            return float(getattr(e, "self_device_time_total", getattr(e, "self_cuda_time_total", 0.0)))
        return float(e.self_cpu_time_total)

    timed = [e for e in events if self_time(e) > 0]
    total = sum(self_time(e) for e in timed) or 1.0
    timed.sort(key=self_time, reverse=True)
    syncs = {name: 0.0 for name in _SYNC_EVENTS}
    syncs["Memcpy DtoH"] = 0.0
    for e in events:
        for name in syncs:
            if name in e.key:
                syncs[name] += e.count / steps
    return {
        "steps": steps,
        "time_unit": "device" if cuda else "cpu",
        "top": [
            {
                "name": e.key[:120],
                "self_ms_per_step": round(self_time(e) / 1e3 / steps, 4),
                "percent": round(100 * self_time(e) / total, 2),
            }
            for e in timed[:top]
        ],  # fmt: skip
        "syncs_per_step": syncs,
    }


def _env() -> dict:
    env = dict(os.environ, GWF_PROGRESS="0", PYTHONPATH=str(ROOT))
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        env.pop(k, None)
    return env


def _cli_args(args) -> list[str]:
    if args.dry_run:
        return (
            "--smoke --method jko-kldv --image-size 8 --n-synthetic 64 --batch-size 8 --phases 2 "
            "--iters-first 60 "
            "--iters 60 --ckpt-every 5 --fid-samples 0 --no-progress --device cpu"
        ).split()
    return (
        "--method jko-kldv --net small --data synthetic --feature standin --batch-size 64 --phases 2 "
        "--iters-first 60 --iters 60 --ckpt-every 10 --fid-samples 0 --no-progress"
    ).split()


def resume_check(args, folder: Path) -> dict:
    """SIGKILL a CLI run after its first checkpoint, ``--resume`` it, compare with an uninterrupted run."""
    base = [sys.executable, "-m", "gwf_tutorial.cifar10", *_cli_args(args)]
    killed, ref = folder / "killed", folder / "ref"
    proc = subprocess.Popen([*base, "--out", str(killed)], cwd=ROOT, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    t0 = time.time()
    while not (killed / "last.pt").exists() and proc.poll() is None and time.time() - t0 < 120:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    if not (killed / "last.pt").exists():
        return {"bit_exact": None, "note": "the run wrote no checkpoint before it was killed"}
    at_kill = int(train.load_checkpoint(killed / "last.pt")[0]["step"])
    subprocess.run(
        [*base, "--out", str(killed), "--resume"], cwd=ROOT, env=_env(), check=True, capture_output=True
    )
    subprocess.run([*base, "--out", str(ref)], cwd=ROOT, env=_env(), check=True, capture_output=True)
    a = train.load_checkpoint(killed / "last.pt")[0]
    b = train.load_checkpoint(ref / "last.pt")[0]
    diffs = [
        (a["trainer"][k][n].double() - b["trainer"][k][n].double()).abs().max().item()
        for k in ("map", "ema", "critic")
        for n in a["trainer"][k]
        if a["trainer"][k][n].is_floating_point()
    ]
    cuda = "cpu" not in a["device"].lower()
    return {
        "killed_at_step": at_kill,
        "total_iters": int(b["step"]),
        "resumed_to_step": int(a["step"]),
        "bit_exact": max(diffs) == 0.0,
        "max_abs_param_diff": max(diffs),
        "note": "killed mid-way" if 0 < at_kill < int(b["step"]) else "the run finished before the kill",
        "device": a["device"],
        "expected_bit_exact": not cuda,  # cuDNN autotuning, atomics: CUDA runs are not bitwise reproducible
    }


def torchrun_check(args, folder: Path) -> dict:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1",
           "-m", "gwf_tutorial.cifar10", *_cli_args(args), "--out", str(folder / "torchrun")]  # fmt: skip
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    out = p.stdout + p.stderr
    summary = {}
    for line in p.stdout.splitlines()[::-1]:
        if line.startswith("{"):
            summary = json.loads(line)
            break
    return {
        "returncode": p.returncode,
        "seconds": round(time.perf_counter() - t0, 2),
        "status": summary.get("status"),
        "step": summary.get("step"),
        "output_tail": out[-1500:],
    }


def objectives_check(args) -> dict:
    script = ROOT / "benchmarks" / "objectives.py"
    if not script.exists():
        return {"present": False, "note": "benchmarks/objectives.py is not present in this checkout"}
    if args.dry_run:
        return {"present": True, "note": "dry run: not run"}
    t0 = time.perf_counter()
    try:
        cmd = [sys.executable, str(script), "--quick"]
        p = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True,
                           text=True, timeout=args.objectives_timeout)  # fmt: skip
    except subprocess.TimeoutExpired:
        return {"present": True, "returncode": None, "note": f"timed out after {args.objectives_timeout} s"}
    return {
        "present": True,
        "returncode": p.returncode,
        "seconds": round(time.perf_counter() - t0, 2),
        "output_tail": (p.stdout + p.stderr)[-3000:],
    }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument("--dry-run", action="store_true", help="CPU, tiny nets and times: the same code path")
    p.add_argument(
        "--out", help="JSON path (default gwf_tutorial/results/gpu_check.json; dry run: a temp file)"
    )
    p.add_argument("--seconds", type=float, help="steady-state seconds per measurement (default 15; dry 0.3)")
    p.add_argument("--warmup", type=int, help="warm-up iterations before timing (default 15; dry 2)")
    p.add_argument("--profile-steps", dest="profile_steps", type=int, default=3)
    p.add_argument("--objectives-timeout", dest="objectives_timeout", type=float, default=90.0)
    p.add_argument("--skip", nargs="*", default=[], choices=("resume", "torchrun", "objectives", "profile"))
    return p


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    args.seconds = args.seconds if args.seconds is not None else (0.3 if args.dry_run else 15.0)
    args.warmup = args.warmup if args.warmup is not None else (2 if args.dry_run else 15)
    if not args.dry_run and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run on a GPU, or pass --dry-run")
    t_start = time.perf_counter()
    res: dict = {
        "schema": benchmark.GPU_CHECK_SCHEMA,
        "dry_run": bool(args.dry_run),
        "device": torch.cuda.get_device_name(0) if not args.dry_run else "CPU (dry run)",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "argv": list(argv if argv is not None else sys.argv[1:]),
    }
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        cfg = _config("jko-kldv", args, str(folder))
        res["settings"] = {
            "net": cfg.net, "recipe_net": "small", "batch_size": cfg.batch_size, "image_size": cfg.image_size,
            "data": cfg.data, "seconds": args.seconds, "warmup": args.warmup,
            "profile_steps": args.profile_steps,
        }  # fmt: skip
        res["throughput"], res["host_reads"], res["profile"] = [], {}, {}
        for method in cifar10.METHODS:
            rec, tr = measure(method, args, str(folder / method))
            res["throughput"].append(rec)
            res["host_reads"][method] = host_reads(tr)
            if "profile" not in args.skip:
                res["profile"][method] = profile_steps(tr, args.profile_steps)
            print(json.dumps(rec), flush=True)
            del tr
        rec, _ = measure("jko-kldv", args, str(folder / "fp32"), amp=False)
        res["throughput"].append(rec)
        print(json.dumps(rec), flush=True)
        if "resume" not in args.skip:
            res["resume"] = resume_check(args, folder)
            print("resume:", json.dumps(res["resume"]), flush=True)
        if "torchrun" not in args.skip:
            res["torchrun"] = torchrun_check(args, folder)
            print("torchrun: returncode", res["torchrun"]["returncode"], flush=True)
    res["objectives"] = {"skipped": True} if "objectives" in args.skip else objectives_check(args)
    res["seconds_total"] = round(time.perf_counter() - t_start, 1)
    out = args.out or (
        str(Path(tempfile.gettempdir()) / "gpu_check_dry.json")
        if args.dry_run
        else str(ROOT / "gwf_tutorial" / "results" / "gpu_check.json")
    )
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(res, indent=1) + "\n")
    print(f"wrote {out} ({res['seconds_total']} s)", flush=True)
    return res


if __name__ == "__main__":
    main()
