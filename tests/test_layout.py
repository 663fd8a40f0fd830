"""The package's shape: layers without circles, and imports inside functions only where they must be.

Every ``import`` of the package is counted, those inside functions too (moving an import into a
function to break a circle hides the circle, it does not remove it), and the graph of the package's
modules must have no cycle. An import inside a function is allowed only for an optional or heavy
dependency that a command must be able to run without (listed below, each with its reason), and in
the top layer (the ``alexnet`` facade, ``cli``, ``commands/``), which nothing imports.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "alexnet"

# third-party imports allowed inside functions: the reason each is not imported at the top
OPTIONAL = {
    "onnx": "the [export] extra",
    "onnxruntime": "the [export] extra",
    "onnxscript": "the [export] extra",
    "huggingface_hub": "the [export] extra",
    "fastapi": "the [serve] extra",
    "starlette": "the [serve] extra",
    "pydantic": "the [serve] extra (with fastapi)",
    "uvicorn": "the [serve] extra",
    "matplotlib": "plots: a second to import, and only some commands draw",
    "torch.utils.tensorboard": "TensorBoard: seconds to import, only training writes events",
    "torch.utils.cpp_extension": "builds the optional fused kernel (needs a compiler)",
    "triton": "GPU kernels",
    "scipy": "the [experiments] extra: the experiments' statistics",
}
TOP_LAYER = ("alexnet", "alexnet.cli", "alexnet.commands")  # may import the package inside functions
# package modules that exist to hold an optional dependency, imported inside functions like it
OPTIONAL_MODULES = {"alexnet.models._rnorm_triton": "the Triton kernels: imports triton"}


def module_name(path: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    is_pkg = parts[-1] == "__init__"
    return ".".join(parts[:-1] if is_pkg else parts), is_pkg


def package_imports() -> dict[str, list[tuple[str, bool, int]]]:
    """module -> [(imported module or name, inside a function, line)], absolute names."""
    modules = {module_name(p)[0]: p for p in PACKAGE.rglob("*.py")}
    found: dict[str, list[tuple[str, bool, int]]] = {}
    for name, path in modules.items():
        _, is_pkg = module_name(path)
        base = name.split(".") if is_pkg else name.split(".")[:-1]
        tree = ast.parse(path.read_text())
        in_function = {
            id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)) for n in ast.walk(f)
        }
        out = []
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    target = ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                # `from pkg import sub` imports pkg (its __init__) and, when it is one, the submodule
                names = [target] + [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in modules]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            out += [(n, id(node) in in_function, node.lineno) for n in names]
        found[name] = out
    return found


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in list(edges):
        if v not in index:
            visit(v)
    return out


def test_the_package_has_no_import_cycle_counting_imports_inside_functions() -> None:
    imports = package_imports()
    edges = {m: {t for t, _, _ in found if t in imports and t != m} for m, found in imports.items()}
    assert len(edges) > 60  # the walk found the package
    assert cycles(edges) == []


def test_the_cycle_check_finds_a_circle_hidden_in_a_function() -> None:
    # the check itself: a -> b at the top, b -> a inside a function
    assert cycles({"a": {"b"}, "b": {"a"}}) == [["a", "b"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_imports_inside_functions_are_only_optional_dependencies_or_the_top_layer() -> None:
    imports = package_imports()
    wrong = []
    for module, found in imports.items():
        top = module in TOP_LAYER or module.startswith("alexnet.commands.")
        for target, inside, line in found:
            if not inside:
                continue
            if target.startswith("alexnet"):
                ok = top or target in OPTIONAL_MODULES
            else:
                ok = top or any(target == o or target.startswith(o + ".") for o in OPTIONAL) or target == "importlib"
            if not ok:
                wrong.append(f"{module}:{line} imports {target} inside a function")
    assert wrong == []


def test_no_module_below_the_facade_imports_the_package_itself() -> None:
    # `from alexnet import X` inside the package would make alexnet/__init__ a node every module hangs on
    imports = package_imports()
    assert [m for m, found in imports.items() if m != "alexnet" and any(t == "alexnet" for t, _, _ in found)] == []


@pytest.mark.parametrize(
    "module",
    [
        "alexnet",
        "alexnet.cli",
        "alexnet.inference.onnx",
        "alexnet.inference.base",
        "alexnet.data.images",
        "alexnet.config",
    ],
)
def test_light_modules_do_not_import_torch(module: str) -> None:
    import subprocess

    code = f"import sys, {module}; from alexnet.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"
