"""Benchmark one training step of an ARS-DETR family detector on CPU (or CUDA with --device cuda).

Measures, per image of ``--size`` x ``--size`` (default 800, the DIOR-R tile; ResNet-50 random init,
6 encoder / 6 decoder layers, 300 queries, ``--objects`` targets so the DN queries are active):

- wall time of forward + criterion + backward, mean over ``--iters`` timed steps after one warm-up;
- the forward time of each part (backbone + neck, encoder, everything after the encoder), by hooks;
- the share of the step spent in multi-scale deformable attention, three ways: the forward time of every
  (rotated) MSDA module (hooks); forward + backward of the same calls replayed alone on their recorded
  inputs (``time_msda_calls``); and, from ``torch.profiler``, the self time of the ``grid_sampler_2d``
  forward and backward kernels (the sampling core) over the whole step;
- peak memory: on CPU the growth of the process's peak RSS over a training step above the model and
  inputs (plus the absolute peak), on CUDA ``torch.cuda.max_memory_allocated``.

Usage: python bench/bench_detector.py [--variant ars_detr] [--size 800] [--iters 2] [--threads 2]
"""
from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mutdet_core.models.deformable_attention import MultiScaleDeformableAttention  # noqa: E402
from mutdet_core.models.detector import build_detector  # noqa: E402


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def random_targets(n: int, num_classes: int, device, generator: torch.Generator) -> list[dict]:
    boxes = torch.rand(n, 4, generator=generator) * torch.tensor([0.8, 0.8, 0.1, 0.05]) + \
        torch.tensor([0.1, 0.1, 0.02, 0.01])
    return [{"labels": torch.randint(0, num_classes, (n,), generator=generator).to(device),
             "boxes": boxes.to(device),
             "angles": (torch.rand(n, generator=generator) - 0.5).mul(math.pi).to(device)}]


class ForwardTimer:
    """Accumulates the forward wall time of modules through pre/post hooks."""

    def __init__(self, sync):
        self.totals = defaultdict(float)
        self._start = {}
        self.sync = sync

    def attach(self, module: torch.nn.Module, name: str):
        def pre(mod, args):
            self.sync()
            self._start[id(mod)] = time.perf_counter()

        def post(mod, args, output):
            self.sync()
            self.totals[name] += time.perf_counter() - self._start.pop(id(mod))
        module.register_forward_pre_hook(pre)
        module.register_forward_hook(post)


def time_msda_calls(model: torch.nn.Module, step, sync) -> tuple[float, int]:
    """Forward + backward seconds of every (rotated) MSDA call of one step, replayed on its recorded inputs.

    The step's autograd graph mixes MSDA with everything else, so the calls of one step are recorded by
    pre-hooks and re-run alone (query and value requiring grad, as in the model; parameter grads included).
    """
    calls = []

    def record(module, args, kwargs):
        calls.append((module, [a.detach() for a in args], {k: v.detach() if isinstance(v, torch.Tensor) else v
                                                           for k, v in kwargs.items()}))
    handles = [m.register_forward_pre_hook(record, with_kwargs=True) for m in model.modules()
               if isinstance(m, MultiScaleDeformableAttention)]
    step()
    for handle in handles:
        handle.remove()
    total = 0.0
    for module, args, kwargs in calls:
        args = [a.clone().requires_grad_(i in (0, 2)) for i, a in enumerate(args)]  # query, value
        sync()
        start = time.perf_counter()
        out = module(*args, **kwargs)
        out.backward(torch.ones_like(out))
        sync()
        total += time.perf_counter() - start
    model.zero_grad(set_to_none=True)
    return total, len(calls)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="ars_detr")
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--size", type=int, default=800)
    parser.add_argument("--layers", type=int, default=6, help="encoder and decoder layers")
    parser.add_argument("--objects", type=int, default=30)
    parser.add_argument("--iters", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-profile", action="store_true", help="skip the torch.profiler step")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    cfg = {"variant": args.variant, "num_classes": 15, "backbone": {"name": args.backbone, "frozen_stages": 1},
           "num_encoder_layers": args.layers, "num_decoder_layers": args.layers}
    model, criterion, _ = build_detector(cfg)
    model.to(device).train()
    images = torch.randn(1, 3, args.size, args.size, device=device)
    targets = random_targets(args.objects, 15, device, torch.Generator().manual_seed(0))

    timer = ForwardTimer(sync)
    timer.attach(model.backbone, "backbone")
    timer.attach(model.neck, "neck")
    timer.attach(model.encoder, "encoder")
    timer.attach(model.decoder, "decoder")
    for module in model.modules():
        if isinstance(module, MultiScaleDeformableAttention):
            timer.attach(module, "msda")

    def step():
        out = model(images, targets=targets)
        loss = criterion.total_loss(criterion(out, targets))
        model.zero_grad(set_to_none=True)
        loss.backward()
        sync()
        return out

    rss_before = peak_rss_mib()  # model and inputs only
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    out = step()  # warm-up (allocator, lazy init); the memory peak of a step is reached here already
    tokens = out["memory"].shape[1]
    del out
    timer.totals.clear()
    start = time.perf_counter()
    for _ in range(args.iters):
        step()
    step_s = (time.perf_counter() - start) / args.iters
    forward = {k: v / args.iters for k, v in timer.totals.items()}
    result = {
        "variant": args.variant, "backbone": args.backbone, "size": args.size, "layers": args.layers,
        "threads": args.threads, "device": str(device), "tokens": tokens, "iters": args.iters,
        "step_s": round(step_s, 3),
        "forward_s": {k: round(v, 3) for k, v in forward.items()},
        "msda_forward_share_of_step": round(forward.get("msda", 0.0) / step_s, 3),
    }
    if device.type == "cuda":
        result["peak_mem_mib"] = round(torch.cuda.max_memory_allocated() / 2 ** 20, 1)
    else:
        result["peak_rss_mib"] = round(peak_rss_mib(), 1)
        result["peak_rss_growth_mib"] = round(peak_rss_mib() - rss_before, 1)

    msda_s, msda_calls = time_msda_calls(model, step, sync)
    result["msda_calls_per_step"] = msda_calls
    result["msda_fwd_bwd_s"] = round(msda_s, 3)
    result["msda_fwd_bwd_share_of_step"] = round(msda_s / step_s, 3)

    if not args.no_profile:
        activities = [torch.profiler.ProfilerActivity.CPU]
        if device.type == "cuda":
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        with torch.profiler.profile(activities=activities) as prof:
            step()
        events = prof.key_averages()
        use_cuda = device.type == "cuda"
        total = sum((e.self_device_time_total if use_cuda else e.self_cpu_time_total) for e in events)
        sampling = {e.key: (e.self_device_time_total if use_cuda else e.self_cpu_time_total)
                    for e in events if "grid_sampler" in e.key}
        result["grid_sample_share_of_step"] = round(sum(sampling.values()) / max(total, 1), 3)
        result["grid_sample_ops_s"] = {k: round(v / 1e6, 3) for k, v in sampling.items()}
        top = sorted(events, key=lambda e: -(e.self_device_time_total if use_cuda else e.self_cpu_time_total))[:8]
        result["top_ops_self_s"] = {e.key: round((e.self_device_time_total if use_cuda else e.self_cpu_time_total)
                                                 / 1e6, 3) for e in top}
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
