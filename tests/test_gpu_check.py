"""bench/gpu_check.py: its tiny CPU run writes every section with numbers, so the GPU check never goes stale;
a failing, slow or unaffordable section is recorded and the run goes on."""
from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
import time

import pytest
import torch

from conftest import REPO_ROOT

SCRIPT = REPO_ROOT / "bench" / "gpu_check.py"


def load_gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


gpu_check = load_gpu_check()
SECTION_NAMES = [name for name, _, _ in gpu_check.SECTIONS]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """The tiny setting run as a user would run the real one: a subprocess writing to --out and appending its
    markdown to a copy of BENCHMARKS.md."""
    out = tmp_path_factory.mktemp("gpu_check")
    benchmarks = out / "BENCHMARKS.md"
    benchmarks.write_text("# Benchmarks\n\nearlier text\n")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--tiny", "--out", str(out / "result"),
                           "--append-benchmarks", str(benchmarks)],
                          capture_output=True, text=True, timeout=600, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "result" / "gpu_check.json").read_text())
    return report, (out / "result" / "gpu_check.md").read_text(), benchmarks.read_text()


def positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_tiny_run_measures_every_section(tiny_run):
    report, _, _ = tiny_run
    assert report["setting"] == "tiny" and report["device"] == "cpu"
    for key in ("date", "device_name", "torch", "cuda", "cudnn", "faiss", "segment_anything", "tf32"):
        assert key in report
    assert report["torch"] == torch.__version__
    sections = report["sections"]
    assert list(sections) == SECTION_NAMES
    for name, result in sections.items():
        assert result["status"] == "ok", (name, result)
        assert positive(result["seconds_total"]) and positive(result["budget_s"])

    for name in ("sam_vit_b", "sam_vit_h"):
        sam = sections[name]
        assert sam["group"] == "sam" and sam["model"] == "tiny" and sam["weights"] == "random"
        assert positive(sam["paper"]["tiles_per_second"]) and sam["paper"]["tiles"] >= 1
        assert positive(sam["thresholds_off"]["tiles_per_second"])
        # thresholds at 0 keep at least what the paper's thresholds keep
        assert sam["thresholds_off"]["masks_per_tile"] >= sam["paper"]["masks_per_tile"]

    for precision in ("fp32", "bf16"):
        emb = sections[f"embeddings_{precision}"]
        assert emb["precision"] == precision and positive(emb["crops_per_second"]) and emb["crops"] >= 16
    assert 0.9 < sections["embeddings_bf16"]["cosine_to_fp32_min"] <= 1.0 + 1e-6

    for precision in ("fp32", "bf16"):
        det = sections[f"detector_{precision}"]
        assert det["precision"] == precision and det["batch"] == 2
        assert positive(det["s_per_iter"]) and positive(det["peak_rss_mib"])
        assert det["msda_calls_per_step"] == 3  # 1 encoder + 2 decoder layers of the tiny detector
        assert 0 < det["msda_forward_share"] < 1 and 0 < det["grid_sampler_share"] < 1
        assert positive(det["msda_fwd_bwd_share"])

    kmeans = sections["kmeans"]
    assert kmeans["device"] == "cpu" and positive(kmeans["seconds"]) and kmeans["rows"] == 2000

    for name in ("agreement_attention", "agreement_detector"):
        check = sections[name]
        assert check["agree"] is True and check["reference"] == "cpu float64" and check["tolerance"] == 1e-4
        # fp32 against fp64 differs a little: a zero would mean a tensor compared with itself
        assert 0 < check["worst_max_abs_diff"] < 1e-4
    names = {c["name"] for c in sections["agreement_attention"]["comparisons"]}
    assert {"MultiScaleDeformableAttention.output", "RotatedMultiScaleDeformableAttention.grad_value",
            "RotatedMultiScaleDeformableAttention.grad_sampling_offsets.weight"} <= names
    assert sections["agreement_detector"]["topk_indices_equal"] is True
    assert {c["name"] for c in sections["agreement_detector"]["comparisons"]} == {
        "memory", "pred_logits", "pred_boxes", "pred_angles"}


def test_tiny_run_markdown_is_a_benchmarks_section(tiny_run):
    report, text, benchmarks = tiny_run
    lines = text.splitlines()
    assert lines[0].startswith("## GPU check (`bench/gpu_check.py` --tiny)")
    rows = [line for line in lines if line.startswith("| ") and not line.startswith("| what")]
    assert len(rows) == 9  # 2 SAM, 2 embeddings, 2 detector, k-means, 2 agreement
    assert not any("error" in row or "timeout" in row or "skipped" in row for row in rows)
    assert sum("tiles/s" in row for row in rows) == 2 and sum("crops/s" in row for row in rows) == 2
    assert sum("s/iter" in row for row in rows) == 2 and sum("**agree**" in row for row in rows) == 2
    assert benchmarks.startswith("# Benchmarks\n\nearlier text\n") and benchmarks.endswith(text)


def test_markdown_names_a_failed_section(tiny_run):
    report, _, _ = tiny_run
    report = json.loads(json.dumps(report))
    report["sections"]["sam_vit_h"] = {"group": "sam", "status": "error",
                                       "error": "OutOfMemoryError: CUDA out of memory"}
    report["sections"]["agreement_detector"]["agree"] = False
    text = gpu_check.markdown(report)
    assert "error: OutOfMemoryError: CUDA out of memory" in text
    assert "**DISAGREE**" in text


def test_failing_slow_and_unaffordable_sections_are_recorded():
    settings = gpu_check.CheckSettings.tiny()
    settings.budgets = {"boom": 1, "slow": 1, "fine": 1, "big": 100}
    settings.hard_factor = 1.0
    settings.total_budget = 10.0

    def boom(ctx):
        ctx.partial["before"] = 1
        raise ValueError("broken on purpose")

    def slow(ctx):
        ctx.partial["measured"] = 2.5
        time.sleep(20)
        return {"never": True}

    def fine(ctx):
        return {"value": 3}

    start = time.perf_counter()
    report = gpu_check.run_check(torch.device("cpu"), settings, sections=[
        ("boom", "g", boom), ("slow", "g", slow), ("fine", "g", fine), ("big", "g", fine)])
    assert time.perf_counter() - start < 15  # the sleeping section was interrupted
    sections = report["sections"]
    assert sections["boom"]["status"] == "error" and "broken on purpose" in sections["boom"]["error"]
    assert sections["boom"]["partial"] == {"before": 1}
    assert sections["slow"]["status"] == "timeout" and sections["slow"]["partial"] == {"measured": 2.5}
    assert sections["fine"] == {"group": "g", "status": "ok", "value": 3,
                                "seconds_total": sections["fine"]["seconds_total"], "budget_s": 1}
    assert sections["big"]["status"] == "skipped" and "total budget" in sections["big"]["reason"]


def test_only_and_bad_arguments(tmp_path):
    report = gpu_check.main(["--tiny", "--out", str(tmp_path), "--only", "kmeans"])
    assert report["sections"]["kmeans"]["status"] == "ok"
    assert all(r["status"] == "skipped" for name, r in report["sections"].items() if name != "kmeans")
    with pytest.raises(SystemExit):
        gpu_check.main(["--tiny", "--out", str(tmp_path), "--only", "kmeans,nonsense"])


def test_compare_flags_a_difference_beyond_the_tolerance():
    ref = torch.linspace(-2, 2, 50)
    assert gpu_check.compare("x", ref + 5e-5, ref)["agree"] is True
    result = gpu_check.compare("x", ref + torch.where(ref > 1.9, 1e-3, 0.0), ref)
    assert result["agree"] is False and result["max_abs_diff"] == pytest.approx(1e-3, rel=1e-3)


def test_markdown_keeps_what_a_timed_out_section_measured(tiny_run):
    report, _, _ = tiny_run
    report = json.loads(json.dumps(report))
    sam = report["sections"]["sam_vit_h"]
    report["sections"]["sam_vit_h"] = {"group": "sam", "status": "timeout", "error": "stopped after 150 s",
                                       "partial": {k: v for k, v in sam.items() if k != "thresholds_off"}}
    row = next(line for line in gpu_check.markdown(report).splitlines() if "for ViT-H" in line)
    assert f"{sam['paper']['tiles_per_second']:g} tiles/s" in row and row.endswith("then timeout: stopped after 150 s |")
