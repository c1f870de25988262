"""Benchmark one pre-training iteration of every method against a plain fine-tuning iteration.

Same detector for every row: ARS-DETR, ResNet-50 (random init: the weights do not change the cost),
``--encoder-layers`` / ``--decoder-layers`` (default 6 / 6), 300 queries, d_model 256, inputs
``--size`` x ``--size`` (default 256), batch ``--batch`` (2, as per GPU in the paper), ``--objects``
pseudo-boxes per image (default 40, about SAM's ~200 per 800 px tile scaled to the area) with 256-d
embeddings. One iteration = forward + criterion + backward + AdamW step (+ AlignDet's EMA update).

Rows:
- ``finetune``: the fine-tuning detector (15 classes, backbone stage 1 frozen, so the backbone is trained);
- ``pseudo_label_detector``: the same detector on the pseudo-labels (256 classes, backbone fully frozen),
  no pre-training extras: what every method adds on top of it;
- ``detreg``, ``mutdet`` (released configuration), ``mutdet_no_siamese`` (Table 1 row 1), ``updetr``,
  ``aligndet``.

Each row runs in its own process, so that the peak resident memory (``ru_maxrss``, which never goes down)
is that row's; reported: the mean time of ``--iters`` timed iterations after ``--warmup`` ones, and the
peak RSS growth over the model and inputs. On CUDA (``--device cuda``) memory is
``torch.cuda.max_memory_allocated``.

Usage: python bench/bench_pretraining.py [--size 256] [--iters 3] [--threads 1] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mutdet_core.models.detector import build_detector  # noqa: E402
from mutdet_core.pretraining import build_pretrainer  # noqa: E402

ROWS = ("finetune", "pseudo_label_detector", "detreg", "mutdet", "mutdet_no_siamese", "updetr", "aligndet")
METHOD_CFG = {"detreg": {"method": "detreg"}, "mutdet": {"method": "mutdet"},
              "mutdet_no_siamese": {"method": "mutdet", "calibration": "none"},
              "updetr": {"method": "updetr"}, "aligndet": {"method": "aligndet"}}


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def make_inputs(args, num_classes: int, device):
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(args.batch, 3, args.size, args.size, generator=generator).to(device)
    mask = torch.zeros(args.batch, args.size, args.size, dtype=torch.bool, device=device)
    targets = []
    for _ in range(args.batch):
        n = args.objects
        boxes = torch.rand(n, 4, generator=generator) * torch.tensor([0.8, 0.8, 0.15, 0.06]) + \
            torch.tensor([0.1, 0.1, 0.03, 0.015])
        targets.append({"labels": torch.randint(0, num_classes, (n,), generator=generator).to(device),
                        "boxes": boxes.to(device),
                        "angles": (torch.rand(n, generator=generator) - 0.5).mul(math.pi).to(device),
                        "embeddings": F.normalize(torch.randn(n, 256, generator=generator), dim=-1).to(device)})
    return images, mask, targets


def build_row(row: str, detector_cfg: dict):
    if row == "finetune":
        model, criterion, _ = build_detector(dict(detector_cfg, num_classes=15,
                                                  backbone={"name": "resnet50", "frozen_stages": 1}))
        return model, criterion, 15
    if row == "pseudo_label_detector":
        model, criterion, _ = build_detector(dict(detector_cfg, num_classes=256,
                                                  backbone={"name": "resnet50", "freeze_all": True}))
        return model, criterion, 256
    model, criterion = build_pretrainer(METHOD_CFG[row], detector_cfg)
    return model, criterion, 256


def run_row(row: str, args) -> dict:
    torch.manual_seed(0)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    detector_cfg = {"num_encoder_layers": args.encoder_layers, "num_decoder_layers": args.decoder_layers}
    model, criterion, num_classes = build_row(row, detector_cfg)
    model.to(device).train()
    images, mask, targets = make_inputs(args, num_classes, device)
    if row == "finetune":
        targets = [{k: v for k, v in t.items() if k != "embeddings"} for t in targets]
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4, weight_decay=1e-5)
    on_iteration = getattr(model, "on_iteration", None)
    base_rss = peak_rss_mib()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for it in range(args.warmup + args.iters):
        sync()
        start = time.perf_counter()
        losses = criterion(model(images, mask, targets), targets)
        total = sum(criterion.weight_dict[k] * v for k, v in losses.items() if k in criterion.weight_dict)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(params, 35.0)
        optimizer.step()
        if on_iteration is not None:
            on_iteration(it + 1, 1000)
        sync()
        if it >= args.warmup:
            times.append(time.perf_counter() - start)
    memory = (torch.cuda.max_memory_allocated() / 2 ** 20 if device.type == "cuda"
              else peak_rss_mib() - base_rss)
    return {"row": row, "seconds": sum(times) / len(times), "peak_memory_mib": memory,
            "peak_rss_mib": peak_rss_mib(), "trainable_parameters": sum(p.numel() for p in params),
            "losses": len(losses)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--objects", type=int, default=40)
    parser.add_argument("--encoder-layers", type=int, default=6)
    parser.add_argument("--decoder-layers", type=int, default=6)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rows", nargs="*", default=list(ROWS), choices=ROWS)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--worker", choices=ROWS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.worker:
        print(json.dumps(run_row(args.worker, args)))
        return

    forwarded = [f"--size={args.size}", f"--batch={args.batch}", f"--objects={args.objects}",
                 f"--encoder-layers={args.encoder_layers}", f"--decoder-layers={args.decoder_layers}",
                 f"--iters={args.iters}", f"--warmup={args.warmup}", f"--threads={args.threads}",
                 f"--device={args.device}"]
    results = []
    for row in args.rows:
        done = subprocess.run([sys.executable, __file__, "--worker", row, *forwarded], capture_output=True,
                              text=True, check=True)
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"{row}: {results[-1]['seconds']:.2f} s", file=sys.stderr, flush=True)
    reference = next((r for r in results if r["row"] == "finetune"), results[0])
    print(f"ARS-DETR, ResNet-50 (random init), {args.encoder_layers}/{args.decoder_layers} layers, 300 queries, "
          f"{args.batch} x {args.size}x{args.size}, {args.objects} pseudo-boxes per image, {args.device}, "
          f"{args.threads} thread(s); mean of {args.iters} iterations after {args.warmup} warm-up")
    print(f"{'row':24s} {'s / iter':>9s} {'x finetune':>11s} {'peak MiB':>9s} {'x finetune':>11s} {'trainable':>11s}")
    for r in results:
        print(f"{r['row']:24s} {r['seconds']:9.2f} {r['seconds'] / reference['seconds']:11.2f} "
              f"{r['peak_memory_mib']:9.0f} {r['peak_memory_mib'] / max(reference['peak_memory_mib'], 1):11.2f} "
              f"{r['trainable_parameters']:11,d}")
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "results": results},
                                        indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
