"""The control plane's layers import downwards only (docs/design.md): every import in
every module, lazy ones inside functions included, goes to a lower layer. A new arrow
upwards (say, api/ importing tools/) fails here naming the file and the import."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).parent.parent / "controlplane" / "rollway"
# Lower number, lower layer. Within the base layer nothing imports anything of Rollway's but
# the package's own __init__ (the core's names), which sits just above it.
LAYERS = {
    "_core": 0, "inputs": 0, "ports": 0, "tls": 0, "proto": 0, "envoy": 0, "ops": 0, "web": 0,
    "__init__": 1, "sources": 2, "model": 3, "plane": 4, "xds": 5, "api": 6, "server": 7, "tools": 8, "cli": 9,
}


def _layer_of(parts: tuple[str, ...]) -> str:
    return parts[0] if len(parts) > 1 else Path(parts[0]).stem


def _imports(tree: ast.AST) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "rollway":
            out.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            out.extend((node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "rollway")
    return out


def test_every_import_points_down_the_layer_order():
    upward = []
    for path in sorted(ROOT.rglob("*.py")):
        layer = _layer_of(path.relative_to(ROOT).parts)
        assert layer in LAYERS, f"{path}: a new top-level part; give it a layer in this test and in docs/design.md"
        for line, module in _imports(ast.parse(path.read_text())):
            target = module.split(".")[1] if "." in module else "__init__"
            if target == layer:
                continue
            assert target in LAYERS, f"{path}:{line}: imports {module}, in no known layer"
            if LAYERS[target] >= LAYERS[layer]:
                upward.append(f"{path.relative_to(ROOT)}:{line}: {layer} imports {module} ({target})")
    assert upward == []


def test_the_check_sees_lazy_imports():
    tree = ast.parse("def f():\n    from rollway.tools.browser import x\n")
    assert _imports(tree) == [(2, "rollway.tools.browser")]


PLANE_NAMES = {"plane", "state", "service", "controller"}   # what code outside plane/ calls a plane object


def _plane_intrusions(tree: ast.AST) -> list[tuple[int, str]]:
    """Assignments to a plane object's attributes (``plane.x = ...``, ``self.plane.x = ...``)
    and its locks taken (``with state.lock``): what only plane/ may do."""
    out = []
    for node in ast.walk(tree):
        targets = node.targets if isinstance(node, ast.Assign) else \
            [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else []
        for target in targets:
            if isinstance(target, ast.Attribute) and _names_a_plane(target.value):
                out.append((node.lineno, f"assigns {ast.unparse(target)}"))
        if isinstance(node, ast.With):
            for item in node.items:
                expr = item.context_expr
                if isinstance(expr, ast.Attribute) and expr.attr in ("lock", "_lock") and _names_a_plane(expr.value):
                    out.append((node.lineno, f"takes {ast.unparse(expr)}"))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "setattr" \
                and node.args and _names_a_plane(node.args[0]):
            out.append((node.lineno, f"patches {ast.unparse(node.args[0])}"))
    return out


def _names_a_plane(expr: ast.expr) -> bool:
    if isinstance(expr, ast.Name):
        return expr.id in PLANE_NAMES
    return isinstance(expr, ast.Attribute) and expr.attr in PLANE_NAMES


def test_nothing_outside_plane_assigns_the_planes_attributes_or_takes_its_locks():
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT).parts
        if LAYERS[_layer_of(parts)] <= LAYERS["plane"] or parts[:2] == ("tools", "sim"):
            continue    # the plane itself, layers that cannot reach one, the simulator's doubles
        found += [f"{path.relative_to(ROOT)}:{line}: {what}" for line, what in _plane_intrusions(ast.parse(path.read_text()))]
    assert found == []


def test_the_intrusion_check_sees_what_it_looks_for():
    tree = ast.parse("plane.x = 1\nself.plane.y += 2\nwith state.lock:\n    pass\nsetattr(plane, 'z', 3)\n")
    assert [what for _, what in _plane_intrusions(tree)] == [
        "assigns plane.x", "assigns self.plane.y", "takes state.lock", "patches plane"]
