"""The conda environment for the cluster installs the same pinned packages as requirements.txt."""
import re

import yaml


def _pins(lines):
    pins = {}
    for line in lines:
        line = line.split("#")[0].strip()
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)\s*==\s*([^\s;]+)", line)
        if m:
            pins[m.group(1).lower().replace("_", "-")] = m.group(2)
    return pins


def test_conda_env_agrees_with_requirements(repo_root):
    req = _pins((repo_root / "requirements.txt").read_text().splitlines())
    env = yaml.safe_load((repo_root / "envs/mutdet.yaml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    conda_pins = _pins(pip_section)
    assert "-e .." in pip_section, "the env must install the pipeline package itself"
    # the one documented difference: faiss from conda-forge with GPU support
    assert "faiss-cpu" in req and "faiss-cpu" not in conda_pins
    assert any(str(d).startswith("faiss-gpu") for d in env["dependencies"])
    expected = {k: v for k, v in req.items() if k != "faiss-cpu"}
    assert conda_pins == expected
    assert "python =3.11" in env["dependencies"]


def test_every_rule_uses_a_conda_env_that_exists(repo_root):
    for smk in (repo_root / "rules").glob("*.smk"):
        for env in re.findall(r'conda:\s*\n\s*"([^"]+)"', smk.read_text()):
            assert (smk.parent / env).resolve().is_file(), f"{smk.name}: {env} missing"
