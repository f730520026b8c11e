"""The python-backend adapters (damo_yolo/serving/triton) sit on top: nothing else imports them, so the library,
export and the client run without Triton's stub; the numpy post-processing they share lives below them."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRITON = ROOT / "damo_yolo" / "serving" / "triton"


def _imports(path: Path) -> set[str]:
    """Absolute names of the modules ``path`` imports (relative imports resolved against its package)."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            names.add(module)
            names |= {f"{module}.{alias.name}" for alias in node.names}
    return names


def test_nothing_outside_the_triton_adapters_imports_them():
    offenders = []
    for path in sorted((ROOT / "damo_yolo").rglob("*.py")) + sorted((ROOT / "damo_client").rglob("*.py")):
        if TRITON in path.parents:
            continue
        hits = [name for name in _imports(path)
                if name == "damo_yolo.serving.triton" or name.startswith("damo_yolo.serving.triton.")]
        offenders += [f"{path.relative_to(ROOT)}: {name}" for name in hits]
    assert not offenders, offenders


def test_the_adapters_import_the_shared_post_processing_from_below():
    mapback = _imports(TRITON / "mapback.py")
    assert "damo_yolo.serving.detections.map_back" in mapback
    assert not (TRITON / "detections.py").exists()
