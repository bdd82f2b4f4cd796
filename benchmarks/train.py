#!/usr/bin/env python3
"""Seconds per training iteration and peak memory, one fresh process per point.

    python benchmarks/train.py                          # tiny @ 128/256 px, paper @ 256 px; batch 1 and 4
    python benchmarks/train.py --points tiny:128:1 paper:256:8 --device cuda --iters 5

An iteration is what `mambast train` does per step: the three model passes (c,s), (c,c), (s,s), the VGG
features of five images, the four losses, backward, Adam step. Inputs are random tensors (no disk I/O) and
the VGG has random weights (same cost as real ones). Reported: the median of `--iters` timed iterations
after `--warmup` untimed ones (wall clock, and the process's CPU time), and the peak memory of the
process (CPU: peak RSS; CUDA: peak allocated).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

DEFAULT_POINTS = ["tiny:128:1", "tiny:128:4", "tiny:256:1", "tiny:256:4", "paper:256:1", "paper:256:4"]


def run_point(preset: str, size: int, batch: int, device: str, iters: int, warmup: int, amp: bool,
              threads: int, grad_checkpoint: bool = False) -> dict:
    """Time one configuration in this process."""
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from mambast.train.config import train_preset
    from mambast.train.loop import enable_grad_checkpointing
    from mambast.train.losses import loss_terms, total_loss
    from mambast.train.objective import autocast
    from mambast.train.optim import build_optimizer

    if threads:
        torch.set_num_threads(threads)
    from mambast import MambaST
    from mambast.nets.vgg import load_vgg

    cfg = train_preset(preset, size=size, load_size=size, batch_size=batch, amp="bf16" if amp else "off")
    dev = torch.device(device)
    torch.manual_seed(0)
    model = MambaST(cfg.model_config()).to(dev).train()
    if grad_checkpoint:
        enable_grad_checkpointing(model)
    vgg = load_vgg(None, allow_random=True, device=dev)
    opt = build_optimizer(model, cfg)
    g = torch.Generator().manual_seed(0)
    content = torch.rand(batch, 3, size, size, generator=g).to(dev)
    style = torch.rand(batch, 3, size, size, generator=g).to(dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    times, cpu_times = [], []
    for i in range(warmup + iters):
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t0, c0 = time.perf_counter(), time.process_time()
        with autocast(cfg, dev):
            terms, _ = loss_terms(model, vgg, content, style, generator=g)
            loss = total_loss({k: v.float() for k, v in terms.items()}, cfg.weights())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
            cpu_times.append(time.process_time() - c0)
    peak = (torch.cuda.max_memory_allocated(dev) if dev.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"preset": preset, "size": size, "batch": batch, "device": device, "amp": amp,
            "grad_checkpoint": grad_checkpoint,
            "threads": torch.get_num_threads(), "s_per_iter": statistics.median(times),
            "s_per_iter_all": times,
            "cpu_s_per_iter": statistics.median(cpu_times), "peak_mib": peak / 2**20,
            "peak_kind": "cuda max_memory_allocated" if dev.type == "cuda" else "process peak RSS"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", nargs="+", default=DEFAULT_POINTS, help="preset:size:batch ...")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--iters", type=int, default=3, help="timed iterations per point")
    ap.add_argument("--paper-iters", type=int, default=1, help="timed iterations for the paper preset")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--amp", action="store_true", help="bf16 autocast (as `mambast train` does on CUDA)")
    ap.add_argument("--grad-checkpoint", action="store_true", help="recompute the Mamba blocks in the backward")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: run a single point in this process
    args = ap.parse_args()
    if args.one:
        preset, size, batch = args.one.split(":")
        iters = args.paper_iters if preset == "paper" else args.iters
        print(json.dumps(run_point(preset, int(size), int(batch), args.device, iters, args.warmup, args.amp,
                                   args.threads, args.grad_checkpoint)))
        return
    results = []
    print(f"{'preset':>6} {'size':>5} {'batch':>5} {'s/iter':>9} {'cpu s/iter':>10} {'peak MiB':>9}  ({args.device})",
          flush=True)
    for point in args.points:
        cmd = [sys.executable, __file__, "--one", point, "--device", args.device, "--iters", str(args.iters),
               "--paper-iters", str(args.paper_iters), "--warmup", str(args.warmup),
               "--threads", str(args.threads)] + (["--amp"] if args.amp else [])
        cmd += ["--grad-checkpoint"] if args.grad_checkpoint else []
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"{point}: failed: {proc.stderr.strip().splitlines()[-1:]}", flush=True)
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        results.append(r)
        print(f"{r['preset']:>6} {r['size']:>5} {r['batch']:>5} {r['s_per_iter']:>9.3f} "
              f"{r['cpu_s_per_iter']:>10.3f} {r['peak_mib']:>9.0f}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
