"""One-GPU check: the speed and CUDA-vs-CPU agreement numbers the CPU benchmarks cannot give (issue 16, item 6).

On one CUDA GPU, in about 8 minutes (each section has its own time budget), it measures and writes
``gpu_check.json`` and ``gpu_check.md`` (a section ready to paste into BENCHMARKS.md) to ``--out``:

1. ``sam_vit_b``, ``sam_vit_h``: SAM automatic masks, tiles/s on 800 px tiles, through the pipeline's own
   ``SamProposer`` (segment-anything's ``SamAutomaticMaskGenerator`` with the paper's settings). The weights
   are random (``sam_model_registry[...](checkpoint=None)``): the speed is that of the real model, but random
   weights keep almost no mask at the paper's thresholds, so the mask post-processing (RLE, NMS) is nearly
   free; a second figure with both thresholds at 0 (every mask goes through RLE encoding and the NMS)
   bounds it from above.
2. ``embeddings_fp32``, ``embeddings_bf16``: crop embeddings, crops/s (ResNet-50 at 224 px, random weights)
   through ``embed_tile`` (the embedding stage's per-tile call), plain and under bf16 autocast; the bf16
   run also reports the cosine similarity of its features to fp32's.
3. ``detector_fp32``, ``detector_bf16``: one ARS-DETR ResNet-50 training step (forward, loss, backward,
   gradient clipping, AdamW; autocast around forward and loss, as the training engine) at batch 2 on
   1024 x 1024: s/iter, ``torch.cuda.max_memory_allocated``, and the multi-scale deformable attention
   (MSDA) share of the step three ways: its forward time (CUDA events in module hooks), its forward +
   backward time (every MSDA call of a step replayed alone on its recorded inputs), and the share of the
   ``grid_sampler`` kernels (the sampling core) in the profiler's device time.
4. ``kmeans``: faiss spherical k-means (the clustering stage's ``spherical_kmeans``), 1M x 256 -> 256
   clusters, 20 iterations, on the GPU when ``faiss.get_num_gpus() > 0``; otherwise recorded as skipped with
   the reason (and, for comparison, the same run on the CPU).
5. ``agreement_attention``, ``agreement_detector``: the device agrees with the CPU (same weights, same
   inputs, fp32, TF32 off) to 1e-4 (times the tensor's largest magnitude when above 1) on the deformable
   attention (plain and rotated, forward and every gradient; queries with a sample within 1e-4 px of a
   pixel-centre line, where bilinear sampling's gradient jumps, get no output gradient) and on the detector
   forward (eval mode). On a CPU-only run the reference is the CPU in float64 instead, so the same code and
   tolerance are still exercised.

A section that fails, runs out of memory or outlives its hard limit is recorded (``status`` ``error`` or
``timeout`` with the message) and the run goes on; a section that would start with too little of the total
budget left is recorded as ``skipped``. The JSON records the device name, torch / CUDA / cuDNN / faiss
versions, the TF32 settings and the date.

``--tiny`` runs everything small on the CPU (tiny SAM, tiny detector, ResNet-18 on 32 px crops, a tiny
k-means) in well under a minute: ``tests/test_gpu_check.py`` runs it so that the script never goes stale.

Usage:
    python bench/gpu_check.py --out gpu_check_out [--append-benchmarks [BENCHMARKS.md]] [--only a,b]
    python bench/gpu_check.py --tiny --out /tmp/gpu_check_tiny

On a machine without segment-anything, faiss or zarr (the project's device machines), carry their wheels
(zarr 3.1.6, numcodecs 0.16.6, donfig 0.8.1.post1, google-crc32c 1.9.0, faiss-cpu 1.15.1, segment-anything 1.0),
install them with ``pip install --no-index --no-deps --target /tmp/site .whl/*.whl``, set
``PYTHONPATH=/tmp/site`` and write to ``--out $OUT/gpu_check``; append the returned ``gpu_check.md`` to
BENCHMARKS.md by hand.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import gc
import json
import math
import os
import platform
import resource
import signal
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mutdet_core.models.deformable_attention import MultiScaleDeformableAttention  # noqa: E402
from mutdet_core.models.rotated_deformable_attention import RotatedMultiScaleDeformableAttention  # noqa: E402

TOLERANCE = 1e-4  # rtol and atol of every agreement check


@dataclass
class CheckSettings:
    """Sizes and budgets of one run. ``full()`` is the GPU check, ``tiny()`` the CPU smoke run.

    ``budgets``: seconds per section; the timed loops stop at 70 % of it (set-up and warm-up use the
    rest) and the section is interrupted at ``hard_factor`` times it. ``total_budget``: seconds for the run.
    """

    name: str
    sam_tile: int = 800
    sam_points_per_side: int = 32
    embed_arch: str = "resnet50"
    embed_crop: int = 224
    embed_input: int = 1024
    embed_batch: int = 64
    embed_crops: int = 1024          # crops per embed_tile call (one busy tile)
    detector_cfg: dict = field(default_factory=lambda: {
        "variant": "ars_detr", "num_classes": 15, "backbone": {"name": "resnet50", "frozen_stages": 1}})
    detector_size: int = 1024
    detector_batch: int = 2
    detector_objects: int = 30       # per image, so the denoising queries are active
    detector_warmup: int = 2
    detector_max_iters: int = 10
    kmeans_rows: int = 1_000_000
    kmeans_dim: int = 256
    kmeans_k: int = 256
    kmeans_iters: int = 20
    attention_shapes: tuple = ((128, 128), (64, 64), (32, 32), (16, 16))  # 1024 px input, batch 2
    attention_d_model: int = 256
    attention_heads: int = 8
    attention_queries: int = 900
    check_size: int = 512            # detector agreement input, batch 1
    max_timed: int = 20              # at most this many timed tiles / calls per loop
    budgets: dict = field(default_factory=lambda: {
        "agreement_attention": 20, "agreement_detector": 45, "detector_fp32": 70, "detector_bf16": 60,
        "embeddings_fp32": 25, "embeddings_bf16": 25, "sam_vit_b": 60, "sam_vit_h": 90, "kmeans": 50})
    total_budget: float = 440.0      # 8 minutes less imports, CUDA start-up and installing carried wheels
    hard_factor: float = 1.5

    @classmethod
    def full(cls) -> "CheckSettings":
        return cls(name="full")

    @classmethod
    def tiny(cls) -> "CheckSettings":
        return cls(
            name="tiny", sam_tile=128, sam_points_per_side=4, embed_arch="resnet18",
            embed_crop=32, embed_input=128, embed_batch=8, embed_crops=16,
            detector_cfg={"variant": "ars_detr", "num_classes": 3, "backbone": {"name": "tiny", "width": 8},
                          "d_model": 32, "n_heads": 4, "ffn_dim": 64, "num_encoder_layers": 1,
                          "num_decoder_layers": 2, "num_queries": 12, "num_dn_queries": 6, "num_select": 20},
            detector_size=64, detector_objects=3, detector_warmup=1, detector_max_iters=2,
            kmeans_rows=2000, kmeans_dim=16, kmeans_k=8, kmeans_iters=5,
            attention_shapes=((8, 8), (4, 4), (2, 2), (1, 1)), attention_d_model=32, attention_heads=4,
            attention_queries=10, check_size=64, max_timed=3,
            budgets={"agreement_attention": 10, "agreement_detector": 10, "detector_fp32": 10,
                     "detector_bf16": 10, "embeddings_fp32": 5, "embeddings_bf16": 5, "sam_vit_b": 10,
                     "sam_vit_h": 10, "kmeans": 10},
            total_budget=120.0, hard_factor=3.0)


class SectionTimeout(Exception):
    """Raised (from SIGALRM) in a section that outlives its hard limit."""


class Clock:
    """Device-aware timing: CUDA events on a GPU (no host sync inside a step), ``perf_counter`` on CPU."""

    def __init__(self, device: torch.device):
        self.device = device
        self.cuda = device.type == "cuda"

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def mark(self):
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    @staticmethod
    def seconds(start, end) -> float:
        """Seconds between two marks (call ``sync`` first on CUDA)."""
        return end - start if isinstance(start, float) else start.elapsed_time(end) / 1000.0


class Context:
    """What every section gets: device, settings, clock, the deadline of its timed loop, shared inputs."""

    def __init__(self, device: torch.device, settings: CheckSettings):
        self.device, self.settings, self.clock = device, settings, Clock(device)
        self.loop_deadline = math.inf
        self.partial = {}  # a section's results so far: kept when it fails or times out later on
        self._tile = None

    def time_left(self) -> bool:
        return time.perf_counter() < self.loop_deadline

    def tile(self) -> np.ndarray:
        """One synthetic aerial scene (``sam_tile`` px, RGB uint8): no dataset is needed on the GPU machine."""
        if self._tile is None:
            from mutdet_core.synthetic.dataset import SYNTHETIC_CLASSES
            from mutdet_core.synthetic.scene import generate_scene

            size = self.settings.sam_tile
            self._tile = generate_scene(np.random.default_rng(0), size, size, SYNTHETIC_CLASSES, theme="port").image
        return self._tile

    def autocast(self, precision: str):
        if precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)


def timed_loop(ctx: Context, call, max_calls: int) -> tuple[int, float]:
    """Run ``call()`` at least once and until the loop deadline or ``max_calls``: (calls, seconds)."""
    ctx.clock.sync()
    start, calls = time.perf_counter(), 0
    while calls < 1 or (calls < max_calls and ctx.time_left()):
        call()
        calls += 1
    ctx.clock.sync()
    return calls, time.perf_counter() - start


# ----------------------------------------------------------------------------------------------- SAM

def build_random_sam(model_type: str, device: torch.device) -> torch.nn.Module:
    """SAM of ``model_type`` with random weights, in eval mode on ``device``. Built under the device context so
    ViT-H's 636 M parameters are initialised on the GPU (a CPU init takes long); the final ``.to`` moves the
    buffers that segment-anything creates with the legacy ``torch.Tensor`` constructor (always on CPU)."""
    if model_type == "tiny":
        from mutdet_core.pseudo_labels.sam import build_tiny_sam

        return build_tiny_sam().to(device)
    from segment_anything import sam_model_registry

    with torch.device(device):
        model = sam_model_registry[model_type](checkpoint=None)
    return model.eval().to(device)


def sam_section(model_type: str):
    def run(ctx: Context) -> dict:
        from mutdet_core.pseudo_labels.sam import SamParams, SamProposer

        s = ctx.settings
        model_type_used = "tiny" if s.name == "tiny" else model_type
        start = time.perf_counter()
        model = build_random_sam(model_type_used, ctx.device)
        build_s = time.perf_counter() - start
        tile = ctx.tile()
        out = ctx.partial
        out.update(model=model_type_used, tile_px=tile.shape[0], points_per_side=s.sam_points_per_side,
                   weights="random", build_s=round(build_s, 2),
                   parameters_m=round(sum(p.numel() for p in model.parameters()) / 1e6, 1))
        for label, thresholds in (("paper", {}), ("thresholds_off", {"pred_iou_thresh": 0.0,
                                                                      "stability_score_thresh": 0.0})):
            if label == "thresholds_off" and not ctx.time_left():
                out["thresholds_off"] = "skipped: section budget used"
                continue
            proposer = SamProposer(model, SamParams(model_type=model_type_used, checkpoint=None,
                                                    points_per_side=s.sam_points_per_side, **thresholds))
            masks = []
            if label == "paper":
                proposer(tile)  # warm-up (cuDNN autotuning, allocator); the model is warm for the second run
            calls, seconds = timed_loop(ctx, lambda: masks.append(len(proposer(tile)["area"])),
                                        s.max_timed if label == "paper" else 2)
            out[label] = {"tiles": calls, "seconds": round(seconds, 3), "tiles_per_second": round(calls / seconds, 3),
                          "masks_per_tile": round(float(np.mean(masks)), 1)}
        return out
    return run


# ---------------------------------------------------------------------------------------- embeddings

def random_rboxes(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 5) plausible pseudo-boxes cx, cy, w, h, angle in a ``size`` px tile (sides 1-25 % of it)."""
    w = rng.uniform(0.0125, 0.25, n) * size
    return np.stack([rng.uniform(0, size, n), rng.uniform(0, size, n), w, w * rng.uniform(0.2, 1, n),
                     rng.uniform(-np.pi / 2, np.pi / 2, n)], axis=1).astype(np.float32)


def embeddings_section(precision: str):
    def run(ctx: Context) -> dict:
        from mutdet_core.pseudo_labels.embeddings import EmbeddingParams, build_embedder, embed_tile, prepare_tile

        s = ctx.settings
        params = EmbeddingParams(arch=s.embed_arch, crop_size=s.embed_crop, input_size=s.embed_input,
                                 batch_size=s.embed_batch)
        embedder = build_embedder(params, ctx.device)
        tile = ctx.tile()
        prepared = prepare_tile(tile, params.input_size)  # resized once, as the stage's loader thread does
        rboxes = random_rboxes(s.embed_crops, tile.shape[0], np.random.default_rng(0))

        def call():
            with ctx.autocast(precision):
                return embed_tile(embedder, prepared, rboxes, params, ctx.device)

        features = call()  # warm-up
        calls, seconds = timed_loop(ctx, call, s.max_timed)
        out = {"arch": params.arch, "crop_px": params.crop_size, "batch": params.batch_size, "precision": precision,
               "crops": calls * len(rboxes), "seconds": round(seconds, 3),
               "crops_per_second": round(calls * len(rboxes) / seconds, 1)}
        if precision != "fp32":
            reference = embed_tile(embedder, prepared, rboxes, params, ctx.device)
            cosine = (features * reference).sum(1) / np.maximum(
                np.linalg.norm(features, axis=1) * np.linalg.norm(reference, axis=1), 1e-12)
            out.update(cosine_to_fp32_min=round(float(cosine.min()), 5), cosine_to_fp32_mean=round(float(cosine.mean()), 5))
        return out
    return run


# ------------------------------------------------------------------------------------------ detector

def random_targets(batch: int, n: int, num_classes: int, device, seed: int = 0) -> list[dict]:
    """Per image: ``labels`` (n,), ``boxes`` (n, 4) cx, cy, w, h in [0, 1], ``angles`` (n,) le90 radians."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(batch):
        boxes = torch.rand(n, 4, generator=g) * torch.tensor([0.8, 0.8, 0.1, 0.05]) + torch.tensor([0.1, 0.1, 0.02, 0.01])
        out.append({"labels": torch.randint(0, num_classes, (n,), generator=g).to(device), "boxes": boxes.to(device),
                    "angles": ((torch.rand(n, generator=g) - 0.5) * math.pi).to(device)})
    return out


def msda_modules(model: torch.nn.Module) -> list[torch.nn.Module]:
    return [m for m in model.modules() if isinstance(m, MultiScaleDeformableAttention)]


def msda_forward_seconds(ctx: Context, model, step) -> tuple[float, float]:
    """(MSDA forward seconds, step seconds) of one step, MSDA timed by marks in pre/post forward hooks."""
    marks = []
    handles = []
    for module in msda_modules(model):
        handles.append(module.register_forward_pre_hook(lambda mod, args: marks.append(ctx.clock.mark())))
        handles.append(module.register_forward_hook(lambda mod, args, out: marks.append(ctx.clock.mark())))
    try:
        ctx.clock.sync()
        start = ctx.clock.mark()
        step()
        end = ctx.clock.mark()
        ctx.clock.sync()
    finally:
        for handle in handles:
            handle.remove()
    msda = sum(ctx.clock.seconds(a, b) for a, b in zip(marks[::2], marks[1::2]))
    return msda, ctx.clock.seconds(start, end)


def msda_replay_seconds(ctx: Context, model, step, precision: str) -> tuple[float, int]:
    """Forward + backward seconds of every MSDA call of one step, each replayed alone on its recorded inputs
    (query and value requiring grad, as in the model), under the step's autocast. The step's own autograd
    graph interleaves MSDA with everything else, hence the replay."""
    calls = []

    def record(module, args, kwargs):
        calls.append((module, [a.detach() for a in args],
                      {k: v.detach() if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}))
    handles = [m.register_forward_pre_hook(record, with_kwargs=True) for m in msda_modules(model)]
    try:
        step()
    finally:
        for handle in handles:
            handle.remove()
    replays = [(m, [a.clone().requires_grad_(i in (0, 2)) for i, a in enumerate(args)], kw) for m, args, kw in calls]
    ctx.clock.sync()
    start = ctx.clock.mark()
    for module, args, kwargs in replays:
        with ctx.autocast(precision):
            out = module(*args, **kwargs)
        out.float().sum().backward()
    end = ctx.clock.mark()
    ctx.clock.sync()
    model.zero_grad(set_to_none=True)
    return ctx.clock.seconds(start, end), len(calls)


def grid_sample_share(ctx: Context, step) -> float:
    """Share of the ``grid_sampler`` ops (forward and backward) in one profiled step's self time. On CUDA the
    kernel rows alone are summed (an op's row repeats its kernels' device time); on CPU the ops' self CPU time."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if ctx.clock.cuda:
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        step()
        ctx.clock.sync()

    def self_time(e):
        return e.self_device_time_total if ctx.clock.cuda else e.self_cpu_time_total
    events = prof.key_averages()
    if ctx.clock.cuda:
        events = [e for e in events if e.device_type == torch.autograd.DeviceType.CUDA]
    total = sum(self_time(e) for e in events)
    return sum(self_time(e) for e in events if "grid_sampler" in e.key) / max(total, 1)


@contextlib.contextmanager
def recorded(out: dict, key: str):
    """Store an error of the block as ``out[key] = "error: ..."`` instead of raising (timeouts still raise)."""
    try:
        yield
    except Exception as err:  # noqa: BLE001
        out[key] = f"error: {type(err).__name__}: {str(err)[:200]}"


def detector_section(precision: str):
    def run(ctx: Context) -> dict:
        from mutdet_core.engine.optim import build_optimizer
        from mutdet_core.models.detector import build_detector

        s = ctx.settings
        torch.manual_seed(0)
        model, criterion, _ = build_detector(copy.deepcopy(s.detector_cfg))
        model.to(ctx.device).train()
        criterion.to(ctx.device)
        optimizer = build_optimizer(model)
        params = [p for group in optimizer.param_groups for p in group["params"]]
        num_classes = s.detector_cfg.get("num_classes", 15)
        images = torch.randn(s.detector_batch, 3, s.detector_size, s.detector_size, device=ctx.device)
        targets = random_targets(s.detector_batch, s.detector_objects, num_classes, ctx.device)

        def step():  # as the training engine: autocast around forward and loss only
            with ctx.autocast(precision):
                out = model(images, targets=targets)
                loss = criterion.total_loss(criterion(out, targets))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 35.0)
            optimizer.step()
            return out["memory"].shape[1]

        if ctx.clock.cuda:
            torch.cuda.reset_peak_memory_stats(ctx.device)
        for _ in range(s.detector_warmup):
            tokens = step()
        calls, seconds = timed_loop(ctx, step, s.detector_max_iters)
        step_s = seconds / calls
        out = ctx.partial
        out.update(variant=s.detector_cfg["variant"], backbone=s.detector_cfg["backbone"]["name"],
                   batch=s.detector_batch, size_px=s.detector_size, precision=precision,
                   encoder_tokens_per_image=tokens, iters=calls, s_per_iter=round(step_s, 4))
        if ctx.clock.cuda:
            out["peak_mem_mib"] = round(torch.cuda.max_memory_allocated(ctx.device) / 2 ** 20, 1)
        else:
            out["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        # The three attention shares are extras: one failing (a profiler without CUPTI, say) keeps the rest.
        with recorded(out, "msda_forward_share"):
            msda_fwd, hooked_step = msda_forward_seconds(ctx, model, step)
            out["msda_forward_share"] = round(msda_fwd / hooked_step, 3)
        with recorded(out, "msda_fwd_bwd_share"):
            replay_s, n_calls = msda_replay_seconds(ctx, model, step, precision)
            out.update(msda_calls_per_step=n_calls, msda_fwd_bwd_s=round(replay_s, 4),
                       msda_fwd_bwd_share=round(replay_s / step_s, 3))
        with recorded(out, "grid_sampler_share"):
            out["grid_sampler_share"] = round(grid_sample_share(ctx, step), 3)
        return out
    return run


# -------------------------------------------------------------------------------------------- k-means

def unit_mixture(n: int, d: int, centres: int, seed: int = 0) -> np.ndarray:
    """(n, d) float32 unit rows around ``centres`` random directions (as normalised PCA embeddings are)."""
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((centres, d), dtype=np.float32)
    x = c[rng.integers(0, centres, n)] * 0.35 + rng.standard_normal((n, d), dtype=np.float32) * 0.1
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def kmeans_section(ctx: Context) -> dict:
    import faiss

    from mutdet_core.pseudo_labels.clustering import spherical_kmeans

    s = ctx.settings
    x = unit_mixture(s.kmeans_rows, s.kmeans_dim, 4 * s.kmeans_k)
    out = ctx.partial
    out.update(rows=s.kmeans_rows, dim=s.kmeans_dim, clusters=s.kmeans_k, iterations=s.kmeans_iters,
               faiss=faiss.__version__, faiss_gpus=faiss.get_num_gpus())
    on_gpu = ctx.clock.cuda
    if on_gpu and faiss.get_num_gpus() == 0:
        out["status"] = "skipped"
        out["reason"] = (f"faiss {faiss.__version__} has no GPU support here (faiss.get_num_gpus() == 0: a faiss-cpu "
                         f"build); the CPU run below is the same call without the GPU")
        on_gpu = False
    start = time.perf_counter()
    spherical_kmeans(x, s.kmeans_k, niter=s.kmeans_iters, seed=0, use_gpu=on_gpu)  # k-means++ seeding included
    key = "seconds" if out.get("status") != "skipped" else "cpu_seconds"
    out[key] = round(time.perf_counter() - start, 3)
    out["device"] = "gpu" if on_gpu else "cpu"
    out["cpu_threads"] = faiss.omp_get_max_threads()
    return out


# ------------------------------------------------------------------------------------------ agreement

@contextlib.contextmanager
def exact_fp32():
    """TF32 off for matmuls and convolutions (restored afterwards): the agreement checks compare fp32 with fp32."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.get_float32_matmul_precision())
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved[:2]
        torch.set_float32_matmul_precision(saved[2])


def in_exact_fp32(check):
    def run(ctx: Context) -> dict:
        with exact_fp32():
            return check(ctx)
    return run


def reference_of(ctx: Context) -> tuple[torch.device, torch.dtype, str]:
    """The CPU in fp32 against a GPU; the CPU in float64 against the CPU (a CPU-only run)."""
    if ctx.device.type == "cpu":
        return torch.device("cpu"), torch.float64, "cpu float64"
    return torch.device("cpu"), torch.float32, "cpu float32"


def compare(name: str, got: torch.Tensor, ref: torch.Tensor) -> dict:
    """Max abs difference, the same relative to max |ref|, and ``agree``: max abs difference at most
    ``TOLERANCE * max(1, max |ref|)`` (absolute for O(1) tensors; relative to the tensor's scale for the
    parameter gradients, sums over thousands of terms with values in the hundreds)."""
    got, ref = got.detach().double().cpu(), ref.detach().double().cpu()
    diff = float((got - ref).abs().max()) if got.numel() else 0.0
    scale = float(ref.abs().max()) if ref.numel() else 0.0
    return {"name": name, "max_abs_diff": diff, "max_abs_ref": scale, "max_rel_diff": diff / max(scale, 1e-30),
            "agree": diff <= TOLERANCE * max(1.0, scale)}


def summarise(comparisons: list[dict], reference: str) -> dict:
    return {"reference": reference, "tolerance": TOLERANCE, "tf32": False, "agree": all(c["agree"] for c in comparisons),
            "worst_max_abs_diff": max(c["max_abs_diff"] for c in comparisons),
            "worst_max_rel_diff": max(c["max_rel_diff"] for c in comparisons), "comparisons": comparisons}


@torch.no_grad()
def near_cell_edges(module, query, reference_points, shapes, kwargs, margin_px: float = 1e-4) -> torch.Tensor:
    """(B, Q) bool: queries with a sampling location within ``margin_px`` of a line through pixel centres.

    Bilinear sampling is continuous in the location, its gradient is not: it jumps where a sample crosses such
    a line. A sample that close to one may fall on either side in fp32 (one query of 1,800 did in a CPU
    fp32-vs-fp64 run: gradient difference 1e-2), so these queries get no output gradient in the check."""
    m = copy.deepcopy(module).double()
    batch, q, _ = query.shape
    offsets = m.sampling_offsets(query.double()).view(batch, q, m.n_heads, m.n_levels, m.n_points, 2)
    loc = m.sampling_locations(reference_points.double(), offsets, shapes,
                               **{k: v.double() for k, v in kwargs.items()})
    size = torch.stack([shapes[:, 1], shapes[:, 0]], -1).double()[None, None, None, :, None, :]  # (W_l, H_l)
    pixel = loc * size - 0.5  # align_corners=False: pixel centres at integers
    return ((pixel - pixel.round()).abs() < margin_px).flatten(2).any(-1)


def agreement_attention(ctx: Context) -> dict:
    """Plain and rotated MSDA, forward and gradients (query, value, every parameter), device vs reference."""
    s = ctx.settings
    ref_device, ref_dtype, label = reference_of(ctx)
    g = torch.Generator().manual_seed(0)
    shapes = torch.tensor(s.attention_shapes, dtype=torch.long)
    batch, n_values, d = 2, int(shapes.prod(1).sum()), s.attention_d_model
    q, levels = s.attention_queries, len(s.attention_shapes)
    inputs = {
        "query": torch.randn(batch, q, d, generator=g), "value": torch.randn(batch, n_values, d, generator=g),
        "reference_points": torch.cat([torch.rand(batch, q, levels, 2, generator=g) * 0.8 + 0.1,
                                       torch.rand(batch, q, levels, 2, generator=g) * 0.3 + 0.02], -1),
        "reference_angles": (torch.rand(batch, q, generator=g) - 0.5) * math.pi,
    }
    comparisons, masked = [], 0
    for cls in (MultiScaleDeformableAttention, RotatedMultiScaleDeformableAttention):
        torch.manual_seed(0)
        module = cls(d, s.attention_heads, levels, 4)
        with torch.no_grad():  # the init zeroes the offset and weight projections: give the query a say
            module.sampling_offsets.weight.normal_(0, 0.02, generator=g)
            module.attention_weights.weight.normal_(0, 0.05, generator=g)
        grad_out = torch.randn(batch, q, d, generator=g)
        kwargs = {"reference_angles": inputs["reference_angles"]} if cls is RotatedMultiScaleDeformableAttention else {}
        near = near_cell_edges(module, inputs["query"], inputs["reference_points"], shapes, kwargs)
        grad_out[near] = 0.0
        masked += int(near.sum())
        results = []
        for device, dtype in ((ref_device, ref_dtype), (ctx.device, torch.float32)):
            m = copy.deepcopy(module).to(device=device, dtype=dtype)
            query = inputs["query"].to(device, dtype, copy=True).requires_grad_(True)  # fresh leaves each time
            value = inputs["value"].to(device, dtype, copy=True).requires_grad_(True)
            out = m(query, inputs["reference_points"].to(device, dtype), value, shapes.to(device),
                    **{k: v.to(device, dtype) for k, v in kwargs.items()})
            out.backward(grad_out.to(device, dtype))
            results.append({"output": out, "grad_query": query.grad, "grad_value": value.grad,
                            **{f"grad_{n}": p.grad for n, p in m.named_parameters()}})
        for key in results[0]:
            comparisons.append(compare(f"{cls.__name__}.{key}", results[1][key], results[0][key]))
    out = summarise(comparisons, label)
    out["queries_without_gradient"] = masked
    return out


def agreement_detector(ctx: Context) -> dict:
    """Detector forward in eval mode (same weights, same image): encoder memory, the two-stage top-k
    selection, and the final predictions. The predictions are compared only when both sides selected the same
    queries (a near-tie in the encoder scores may flip the selection, which is not a disagreement of the math)."""
    from mutdet_core.models.detector import build_detector

    s = ctx.settings
    ref_device, ref_dtype, label = reference_of(ctx)
    torch.manual_seed(0)
    model, _, _ = build_detector(copy.deepcopy(s.detector_cfg))
    model.eval()
    image = torch.randn(1, 3, s.check_size, s.check_size, generator=torch.Generator().manual_seed(1))
    outputs = []
    with torch.no_grad():
        for device, dtype in ((ref_device, ref_dtype), (ctx.device, torch.float32)):
            m = copy.deepcopy(model).to(device=device, dtype=dtype)
            outputs.append(m(image.to(device, dtype)))
            del m
    ref, got = outputs
    comparisons = [compare("memory", got["memory"], ref["memory"])]
    same_topk = bool(torch.equal(got["enc_outputs"]["topk_indices"].cpu(), ref["enc_outputs"]["topk_indices"].cpu()))
    if same_topk:
        comparisons += [compare(k, got[k], ref[k]) for k in ("pred_logits", "pred_boxes", "pred_angles")]
    out = summarise(comparisons, label)
    out.update(size_px=s.check_size, topk_indices_equal=same_topk)
    return out


# -------------------------------------------------------------------------------------------- driver

SECTIONS = [  # (name, group, function): cheap and decisive first, the long SAM / k-means runs last
    ("agreement_attention", "agreement", in_exact_fp32(agreement_attention)),
    ("agreement_detector", "agreement", in_exact_fp32(agreement_detector)),
    ("detector_fp32", "detector", detector_section("fp32")),
    ("detector_bf16", "detector", detector_section("bf16")),
    ("embeddings_fp32", "embeddings", embeddings_section("fp32")),
    ("embeddings_bf16", "embeddings", embeddings_section("bf16")),
    ("sam_vit_b", "sam", sam_section("vit_b")),
    ("sam_vit_h", "sam", sam_section("vit_h")),
    ("kmeans", "kmeans", kmeans_section),
]


def _raise_timeout(signum, frame):
    raise SectionTimeout("hard time limit reached")


def run_section(ctx: Context, name: str, fn, budget: float, hard_limit: float) -> dict:
    """Run one section under its budget; never raises (errors, OOM and timeouts are recorded)."""
    start = time.perf_counter()
    ctx.loop_deadline = start + 0.7 * budget
    ctx.partial = {}
    use_alarm = hasattr(signal, "setitimer")
    if use_alarm:
        previous = signal.signal(signal.SIGALRM, _raise_timeout)
        signal.setitimer(signal.ITIMER_REAL, hard_limit)
    try:
        result = fn(ctx)
        result = {"status": result.pop("status", "ok"), **result}
    except SectionTimeout:
        result = {"status": "timeout", "error": f"stopped after its hard limit of {hard_limit:.0f} s",
                  "partial": dict(ctx.partial)}
    except Exception as err:  # noqa: BLE001 - one failing section must not end the run
        result = {"status": "error", "error": f"{type(err).__name__}: {str(err)[:500]}",
                  "traceback": traceback.format_exc(limit=-4)[-2000:], "partial": dict(ctx.partial)}
    finally:
        if use_alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
    gc.collect()
    if ctx.clock.cuda:
        torch.cuda.empty_cache()
    result.update(seconds_total=round(time.perf_counter() - start, 2), budget_s=budget)
    return result


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: torch.device, settings: CheckSettings) -> dict:
    env = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "setting": settings.name, "device": str(device), "device_name": cpu_name(),
           "torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
           "python": platform.python_version(), "host": platform.node(), "cpu_count": os.cpu_count(),
           "torch_threads": torch.get_num_threads(),
           "tf32": {"matmul": torch.backends.cuda.matmul.allow_tf32, "cudnn": torch.backends.cudnn.allow_tf32}}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(device_name=props.name, device_memory_gib=round(props.total_memory / 2 ** 30, 1),
                   compute_capability=f"{props.major}.{props.minor}")
    for module in ("faiss", "segment_anything", "torchvision"):
        try:
            env[module] = getattr(__import__(module), "__version__", "installed")
        except ImportError:
            env[module] = None
    return env


def run_check(device: torch.device, settings: CheckSettings, sections=None, only=None) -> dict:
    """Every section in order under its budget and the total budget; returns the report dict."""
    sections = SECTIONS if sections is None else sections
    ctx = Context(device, settings)
    report = {**environment(device, settings), "settings": asdict(settings), "sections": {}}
    start = time.perf_counter()
    for name, group, fn in sections:
        budget = settings.budgets.get(name, 30)
        left = settings.total_budget - (time.perf_counter() - start)
        if only and name not in only:
            result = {"status": "skipped", "reason": "not in --only"}
        elif left < 0.5 * budget:
            result = {"status": "skipped", "reason": f"total budget: {left:.0f} s left of {settings.total_budget:.0f}"}
        else:
            print(f"[gpu_check] {name} (budget {budget} s)", flush=True)
            result = run_section(ctx, name, fn, budget, max(1.0, min(settings.hard_factor * budget, left)))
        report["sections"][name] = {"group": group, **result}
        print(f"[gpu_check] {name}: {json.dumps(result)[:400]}", flush=True)
    report["total_seconds"] = round(time.perf_counter() - start, 1)
    return report


def _fmt(value, unit="") -> str:
    return f"{value:g}{unit}" if isinstance(value, (int, float)) else str(value)


def _pct(value) -> str:
    return f"{value:.0%}" if isinstance(value, (int, float)) else str(value)


def markdown(report: dict) -> str:
    """A BENCHMARKS.md section: one table row per measured figure, skips and errors named."""
    sec = report["sections"]
    rows = []

    def row(what, name, text):
        result = sec.get(name, {})
        status = result.get("status", "missing")
        if status == "ok":
            try:
                rows.append((what, text(result)))
            except Exception as err:  # noqa: BLE001 - a missing figure must not lose the other rows
                rows.append((what, f"ok, but not formatted ({type(err).__name__}: {err}); see gpu_check.json"))
        else:
            message = f"{status}: {result.get('reason') or result.get('error', '')}".strip()
            try:  # what was measured before an error or timeout (SAM ViT-H's paper figure, say) is still shown
                message = f"{text(result['partial'])}; then {message}" if result.get("partial") else message
            except Exception:  # noqa: BLE001 - partial results without the figures this row shows
                pass
            rows.append((what, message))

    for name, label in (("sam_vit_b", "ViT-B"), ("sam_vit_h", "ViT-H")):
        def sam_text(r):
            text = f"**{_fmt(r['paper']['tiles_per_second'])} tiles/s** ({r['paper']['masks_per_tile']:g} masks kept/tile)"
            off = r.get("thresholds_off")
            if isinstance(off, dict):
                text += f"; thresholds 0: {_fmt(off['tiles_per_second'])} tiles/s ({off['masks_per_tile']:g} masks)"
            return text
        r = sec.get(name, {})
        label = label if r.get("model", "tiny") != "tiny" else "tiny (for ViT-" + label[-1] + ")"
        row(f"SAM {label} automatic masks, {r.get('tile_px', '')} px, random weights", name, sam_text)
    for prec in ("fp32", "bf16"):
        def emb_text(r):
            text = f"**{_fmt(r['crops_per_second'])} crops/s** (batch {r['batch']})"
            if "cosine_to_fp32_min" in r:
                text += f", cosine to fp32 min {r['cosine_to_fp32_min']:g}"
            return text
        r = sec.get(f"embeddings_{prec}", {})
        row(f"crop embeddings {r.get('arch', '')} {r.get('crop_px', '')} px, {prec}", f"embeddings_{prec}", emb_text)
    for prec in ("fp32", "bf16"):
        r = sec.get(f"detector_{prec}", {})
        mem = lambda r: f"{r['peak_mem_mib']:g} MiB" if "peak_mem_mib" in r else f"{r['peak_rss_mib']:g} MiB RSS"  # noqa: E731
        row(f"ARS-DETR {r.get('backbone', '')} step, batch {r.get('batch', '')} x {r.get('size_px', '')} px, {prec}",
            f"detector_{prec}", lambda r: f"**{r['s_per_iter']:g} s/iter**, peak {mem(r)}; MSDA share: forward "
            f"{_pct(r['msda_forward_share'])}, forward + backward {_pct(r['msda_fwd_bwd_share'])}, grid_sampler "
            f"kernels {_pct(r['grid_sampler_share'])}")
    k = sec.get("kmeans", {})
    head = f"faiss k-means {k.get('rows', '')} x {k.get('dim', '')} -> {k.get('clusters', '')}, {k.get('iterations', '')} it"
    if k.get("status") == "skipped" and "cpu_seconds" in k:
        rows.append((head, f"GPU skipped: {k['reason']}; CPU ({k['cpu_threads']} threads): {k['cpu_seconds']:g} s"))
    else:
        row(head, "kmeans", lambda r: f"**{r['seconds']:g} s** on {r['device']}")
    for name, what in (("agreement_attention", "deformable attention (plain + rotated), forward and gradients"),
                       ("agreement_detector", "detector forward (eval)")):
        row(f"{report['device']} vs {sec.get(name, {}).get('reference', 'cpu')}: {what}", name,
            lambda r: f"**{'agree' if r['agree'] else 'DISAGREE'}** at {r['tolerance']:g} (worst abs diff "
            f"{r['worst_max_abs_diff']:.2e}, relative {r['worst_max_rel_diff']:.2e}"
            + (", top-k selection differs: predictions not compared" if r.get("topk_indices_equal") is False else "")
            + ")")
    lines = [f"## GPU check (`bench/gpu_check.py`{' --tiny' if report['setting'] == 'tiny' else ''}): "
             f"{report['device_name']}, {report['date'][:10]}",
             f"torch {report['torch']}, CUDA {report['cuda']}, cuDNN {report['cudnn']}, faiss {report.get('faiss')}; "
             f"{report['total_seconds']:g} s in all. Random weights throughout (speed only).", "",
             "| what | value |", "|---|---|"]
    lines += [f"| {what} | {value} |" for what, value in rows]
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder for gpu_check.json and gpu_check.md")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes on the CPU (the test suite's smoke run)")
    parser.add_argument("--device", default=None, help="default: cuda (full) or cpu (--tiny)")
    parser.add_argument("--only", default=None, help="comma-separated section names (the others are skipped)")
    parser.add_argument("--append-benchmarks", nargs="?", const=str(REPO / "BENCHMARKS.md"), default=None,
                        metavar="FILE", help="also append the markdown section to FILE (default BENCHMARKS.md)")
    args = parser.parse_args(argv)
    settings = CheckSettings.tiny() if args.tiny else CheckSettings.full()
    device = torch.device(args.device or ("cpu" if args.tiny else "cuda"))
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA device here; use --tiny (CPU smoke run) or --device cpu")
    only = set(args.only.split(",")) if args.only else None
    unknown = sorted((only or set()) - {name for name, _, _ in SECTIONS})
    if unknown:
        parser.error(f"unknown sections {unknown}; known: {[name for name, _, _ in SECTIONS]}")
    args.out.mkdir(parents=True, exist_ok=True)
    report = run_check(device, settings, only=only)
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n")
    text = markdown(report)
    (args.out / "gpu_check.md").write_text(text)
    if args.append_benchmarks:
        with open(args.append_benchmarks, "a") as fh:
            fh.write("\n" + text)
    print(text)
    return report


if __name__ == "__main__":
    main()
