"""The install contract: the client needs no torch, and CI runs the README's test command."""
from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "mmengine", "onnx", "onnxruntime", "pycocotools", "nvidia-pytriton")


def test_client_imports_without_torch():
    code = ("import sys; sys.modules['torch'] = None\n"  # any `import torch` now raises ImportError
            "import damo_client\n"
            "assert not any(m == 'torch' or m.startswith('torch.') for m in sys.modules if sys.modules[m])\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_base_install_pulls_no_torch():
    requires = metadata.requires("damo-yolo") or []
    base = [r for r in requires if "extra ==" not in r]
    assert base, "no base requirements found"
    assert not [r for r in base if r.split("[")[0].split("=")[0].split("<")[0].strip().lower() in HEAVY]
    assert any(r.startswith("torch==") and 'extra == "train"' in r for r in requires)


def test_pip_install_of_the_client_resolves_no_torch(tmp_path):
    """What `pip install .` would install on a clean machine (resolved by pip, nothing installed)."""
    report = tmp_path / "report.json"
    subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--ignore-installed",
                    "--report", str(report), str(ROOT)], check=True, capture_output=True)
    names = {item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]}
    assert {"damo-yolo", "tritonclient", "numpy", "opencv-python-headless", "click"} <= names
    assert not names & {"torch", "mmengine", "mmengine-lite", "onnxruntime", "nvidia-pytriton", "pycocotools"}


def test_no_generic_top_level_modules():
    top_level = set()
    for dist in metadata.distributions():
        if dist.metadata["Name"] == "damo-yolo":
            files = dist.files or []
            top_level = {str(f).split("/")[0] for f in files}
    assert not {"train", "export", "tests"} & top_level


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "bash scripts/test.sh" in readme and "scripts/test.sh" in ci


def test_the_checks_contributors_run_are_the_ones_ci_runs():
    """scripts/test.sh runs ruff and mypy before pytest; the pre-commit hooks run the same pinned versions."""
    import re
    script = (ROOT / "scripts" / "test.sh").read_text()
    assert script.index(".venv/bin/ruff check .") < script.index(".venv/bin/mypy") < script.index("-m pytest")
    pins = dict(re.findall(r'"(ruff|mypy)==([\d.]+)"', (ROOT / "setup.py").read_text()))
    hooks = (ROOT / ".pre-commit-config.yaml").read_text()
    assert f"rev: v{pins['ruff']}" in hooks and "entry: .venv/bin/mypy" in hooks
    assert metadata.version("ruff") == pins["ruff"] and metadata.version("mypy") == pins["mypy"]


def test_ruff_checks_the_projects_sources_not_a_users_files():
    """A user's config or script saved in the checkout never fails the test command's lint; README's
    fine-tuning config, saved as README writes it, is lint-clean."""
    import re
    import subprocess
    import uuid
    ruff = [str(ROOT / ".venv" / "bin" / "ruff"), "check"]
    user_file = ROOT / f"my_config_{uuid.uuid4().hex[:8]}.py"
    user_file.write_text("x = 1; y = 2\n")  # E702: would fail a lint of everything
    try:
        listed = subprocess.run(ruff + ["--show-files", "."], cwd=ROOT, capture_output=True, text=True).stdout
    finally:
        user_file.unlink()
    assert "damo_client/cli.py" in listed and user_file.name not in listed
    readme = (ROOT / "README.md").read_text()
    config = re.search(r"cat > my_config.py <<'EOF'\n(.*?)\nEOF\n", readme, re.S)
    assert config, "README's fine-tuning config is not where this test looks"
    lint = subprocess.run(ruff + ["--stdin-filename", "train/configs/my_config.py", "-"], cwd=ROOT,
                          input=config.group(1) + "\n", capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout


def test_the_readmes_layout_names_what_the_tree_holds():
    """Every top-level folder, every damo_yolo package and module, every script and every tool is in the
    README's Layout block, and every name the block gives a folder exists."""
    import re
    text = (ROOT / "README.md").read_text()
    block = text.split("## Layout", 1)[1].split("```", 2)[1]
    words = set(re.findall(r"\w+", block))
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    folders = {path.split("/")[0] for path in tracked if "/" in path and not path.startswith(".")}
    assert {f for f in folders if f"{f}/" not in block} == set()
    library = ROOT / "damo_yolo"
    names = {p.name for p in library.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    names |= {p.stem for p in library.glob("*.py")} | {p.stem for p in (library / "serving").glob("*.py")}
    for package in ("models", "data", "training", "evaluation"):
        names |= {p.stem for p in (library / package).glob("*.py")}
    names |= {p.stem for p in (ROOT / "scripts").iterdir()} | {p.stem for p in (ROOT / "damo_client").glob("*.py")}
    assert {n for n in names - {"__init__", "__pycache__"} if n not in words} == set()
    for folder in re.findall(r"^(\S+)/\s", block, re.M):
        assert (ROOT / folder).is_dir(), folder
