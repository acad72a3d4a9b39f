"""The package layering, read from the source with `ast` (nothing is imported).

`ALLOWED` is the table of docs/architecture.md ("Which package may import which"): for each
subpackage, the other parts of `keras_lossopt` its modules may import, at the top of a module
or inside a function. Change both together, and only when the new edge points down.
"""

from __future__ import annotations

import ast
import dataclasses
import pathlib

import pytest

PACKAGE_ROOT = pathlib.Path(__file__).resolve().parent.parent / "keras_lossopt"
EVERY_PART = frozenset(
    {"_validation", "losses", "metrics", "shaping", "adversarial", "callbacks", "tuning", "datasets"}
)

ALLOWED = {
    "_validation": frozenset(),
    "losses": frozenset({"_validation"}),
    "datasets": frozenset({"_validation"}),
    "metrics": frozenset({"_validation", "losses"}),
    "shaping": frozenset({"_validation", "losses"}),
    "adversarial": frozenset({"_validation", "losses"}),
    "callbacks": frozenset({"_validation", "adversarial"}),
    "tuning": frozenset({"_validation", "losses", "metrics"}),
    "cli": EVERY_PART,
    # `keras_lossopt/__init__.py` loads the subpackages by name on first attribute access.
    "": frozenset(),
}

# Module-to-module edges that the table does not allow, each with the reason it is still right.
EXCEPTIONS = {
    ("keras_lossopt.losses.base", "keras_lossopt.shaping.composite"): (
        "`FocalLoss() + 0.5 * DiceLoss()` builds a CompositeLoss; imported inside the operators"
    ),
    ("keras_lossopt.losses.compound", "keras_lossopt.shaping.composite"): (
        "DiceCELoss and DiceFocalLoss are two-term CompositeLosses; shaping.composite itself "
        "imports only losses.base and losses.registry, so the modules form no cycle"
    ),
}

# Edges that must stay inside functions, so that importing the first package does not load the second.
FUNCTION_LEVEL_ONLY = {
    ("callbacks", "adversarial"): "RobustnessEvaluation is re-exported lazily: the callbacks do not load the attacks",
    ("losses", "shaping"): "the loss operators import CompositeLoss when they are used",
}
FUNCTION_LEVEL_EXEMPT = {"keras_lossopt.losses.compound"}  # see EXCEPTIONS


@dataclasses.dataclass(frozen=True)
class Import:
    source: str  # importing module, e.g. "keras_lossopt.metrics.segmentation"
    target: str  # imported module, e.g. "keras_lossopt.losses"
    name: str | None  # the name taken from `target` by `from target import name`
    line: int
    top_level: bool

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}"


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def part_of(module: str) -> str:
    """`keras_lossopt.losses.focal` -> "losses"; `keras_lossopt._validation` -> "_validation"."""
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 else ""


def read_imports(path: pathlib.Path) -> list[Import]:
    source = module_name(path)
    package = source if path.name == "__init__.py" else source.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    top_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append(Import(source, alias.name, None, node.lineno, id(node) in top_level))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                found.append(Import(source, target, alias.name, node.lineno, id(node) in top_level))
    return [imp for imp in found if imp.target == "keras_lossopt" or imp.target.startswith("keras_lossopt.")]


MODULES = sorted(PACKAGE_ROOT.rglob("*.py"))
IMPORTS = [imp for path in MODULES for imp in read_imports(path)]


def is_module(dotted: str) -> bool:
    path = PACKAGE_ROOT.parent.joinpath(*dotted.split("."))
    return path.is_dir() or path.with_suffix(".py").exists()


def resolved_target(imp: Import) -> str:
    """The imported module; `from keras_lossopt.callbacks import _recorder` imports the submodule."""
    if imp.name and is_module(f"{imp.target}.{imp.name}"):
        return f"{imp.target}.{imp.name}"
    return imp.target


def cross_part(imp: Import) -> bool:
    return part_of(imp.source) != part_of(resolved_target(imp))


def static_all(module: str) -> set[str] | None:
    """The literal `__all__` of a module of the package, or None when it has none."""
    path = PACKAGE_ROOT.parent.joinpath(*module.split("."))
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    assigned = {}
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        targets = (
            node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        )
        for target in targets:
            if isinstance(target, ast.Name):
                assigned[target.id] = node.value
    value = assigned.get("__all__")
    # The lazy packages write `__all__ = sorted(_EXPORTS)` over a {name: module} table.
    if isinstance(value, ast.Call) and getattr(value.func, "id", None) == "sorted" and value.args:
        value = assigned.get(getattr(value.args[0], "id", None))
    return None if value is None else set(ast.literal_eval(value))


def test_the_table_names_every_subpackage():
    parts = {part_of(module_name(path)) for path in MODULES}
    assert parts == set(ALLOWED), "a new subpackage needs its row in ALLOWED and in docs/architecture.md"
    assert len(IMPORTS) > 50  # the parser sees the package's imports


def test_every_import_follows_the_table():
    wrong = []
    for imp in IMPORTS:
        source, target = part_of(imp.source), part_of(resolved_target(imp))
        if source == target or target in ALLOWED[source]:
            continue
        if (imp.source, resolved_target(imp)) not in EXCEPTIONS:
            wrong.append(f"{imp.where} imports {resolved_target(imp)} ({source} may import {sorted(ALLOWED[source])})")
    assert not wrong, "\n".join(wrong)


def test_the_exceptions_are_still_needed():
    used = {(imp.source, resolved_target(imp)) for imp in IMPORTS}
    assert set(EXCEPTIONS) <= used, f"remove the exceptions no module needs: {set(EXCEPTIONS) - used}"


@pytest.mark.parametrize("edge", sorted(FUNCTION_LEVEL_ONLY), ids="->".join)
def test_lazy_edges_stay_inside_functions(edge):
    source, target = edge
    at_top = [
        imp.where
        for imp in IMPORTS
        if part_of(imp.source) == source
        and part_of(resolved_target(imp)) == target
        and imp.top_level
        and imp.source not in FUNCTION_LEVEL_EXEMPT
    ]
    assert not at_top, (
        f"{source} -> {target} must be imported inside a function ({FUNCTION_LEVEL_ONLY[edge]}): {at_top}"
    )


def test_no_private_name_crosses_a_subpackage():
    """Helpers used by another subpackage are public in their home module (in its `__all__`).

    `_validation` is the one shared private module: the bottom layer of every package.
    """
    wrong = []
    for imp in IMPORTS:
        target = resolved_target(imp)
        if not cross_part(imp) or part_of(target) == "_validation":
            continue
        name = None if target != imp.target else imp.name  # None: a module is imported
        private_module = any(piece.startswith("_") for piece in target.split(".")[1:])
        if private_module or (name and name.startswith("_")):
            wrong.append(f"{imp.where} imports the private {target} {name or ''}")
            continue
        exported = static_all(target)
        if name and exported is not None and name not in exported:
            wrong.append(f"{imp.where} imports {target}.{name}, which is not in that module's __all__")
    assert not wrong, "\n".join(wrong)


def test_modules_import_each_other_without_cycles():
    """Top-level imports between modules form no cycle (function-level imports may point back)."""
    graph: dict[str, set[str]] = {}
    for imp in IMPORTS:
        if imp.top_level:
            graph.setdefault(imp.source, set()).add(resolved_target(imp))
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycle = [*stack[stack.index(nxt) :], nxt] if nxt in stack else [node, nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
