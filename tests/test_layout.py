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
    "torchcodec": "not a dependency: --decode gpu uses its decode_jpeg where installed",
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


# -- sizes and shapes that keep the code readable (issue: a codebase the next maintainer can carry) ------
LIMITS = {  # package folder -> (most lines in a module, most lines in a function)
    "server": (300, 60),
    "experiments": (300, None),
}
# calls whose positional arguments are the callee's nature: Triton kernel launches and their jitted
# helpers (positional by Triton's convention), nn.Sequential's layers
MANY_POSITIONAL_OK = ("models/_rnorm_triton.py",)


def test_module_and_function_sizes() -> None:
    too_big = []
    for folder, (most_lines, most_function) in LIMITS.items():
        for path in sorted((PACKAGE / folder).rglob("*.py")):
            lines = path.read_text().count("\n")
            if lines > most_lines:
                too_big.append(f"{path.relative_to(PACKAGE)}: {lines} lines (at most {most_lines})")
            if most_function is None:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    n = node.end_lineno - node.lineno + 1  # type: ignore[operator]
                    if n > most_function:
                        too_big.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name}: {n} lines")
    assert too_big == []


def test_no_call_has_more_than_six_positional_arguments() -> None:
    many = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if str(path.relative_to(PACKAGE)) in MANY_POSITIONAL_OK:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and ast.unparse(node.func) not in ("nn.Sequential",):
                positional = [a for a in node.args if not isinstance(a, ast.Starred)]
                if len(positional) > 6:
                    where = f"{path.relative_to(PACKAGE)}:{node.lineno}"
                    many.append(f"{where} {ast.unparse(node.func)}: {len(positional)}")
    assert many == []


def test_four_frames_from_train_to_backward(tiny_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """From ``alexnet.train`` to ``loss.backward()``: train > fit > train_epoch > TrainStep.micro."""
    import inspect

    import torch

    from alexnet import TrainConfig
    from alexnet.training import train

    stacks: list[list[str]] = []
    real = torch.Tensor.backward

    def backward(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        if not stacks:
            frames = [f for f in inspect.stack()[1:] if Path(f.filename).resolve().is_relative_to(PACKAGE)]
            stacks.append([f.function for f in reversed(frames)])
        return real(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "backward", backward)
    cfg = TrainConfig(
        model="cifar_80sec",
        data=str(tiny_folder),
        out=str(tmp_path / "r"),
        epochs=1,
        batch_size=32,
        workers=0,
        model_options={"init": "torch"},
    )
    train(cfg, progress=False, log=lambda s: None)
    assert stacks[0] == ["train", "fit", "train_epoch", "micro"]
