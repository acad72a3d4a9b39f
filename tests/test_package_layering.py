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
    {
        "_validation",
        "_models",
        "_registration",
        "_reduction",
        "_targets",
        "_value_checks",
        "losses",
        "metrics",
        "shaping",
        "adversarial",
        "callbacks",
        "tuning",
        "datasets",
    }
)
# The private modules at the top of the package, shared by the subpackages that the table allows.
SHARED_PRIVATE = frozenset({"_validation", "_value_checks", "_models", "_reduction", "_targets"})

ALLOWED = {
    "_validation": frozenset(),
    "_reduction": frozenset(),
    "_models": frozenset(),
    # Imports the registering subpackages by name (importlib), after Keras has loaded.
    "_registration": frozenset(),
    "_value_checks": frozenset(),
    "_targets": frozenset({"_validation", "_value_checks"}),
    "losses": frozenset({"_validation", "_value_checks", "_reduction", "_targets"}),
    "datasets": frozenset({"_validation"}),
    "metrics": frozenset({"_validation", "_value_checks", "_targets", "losses"}),
    "shaping": frozenset({"_validation", "_value_checks", "losses"}),
    "adversarial": frozenset({"_validation", "_models", "_reduction", "losses"}),
    "callbacks": frozenset({"_validation", "_models", "adversarial"}),
    "tuning": frozenset({"_validation", "losses", "metrics"}),
    "cli": EVERY_PART | {""},  # "": the package itself (`keras_lossopt.__version__`)
    # `keras_lossopt/__init__.py` loads the subpackages by name on first attribute access.
    "": frozenset({"_registration"}),
}

# Private modules of a subpackage that one other subpackage may import: module -> (that subpackage, why).
# The names it takes must be in the private module's `__all__`.
PRIVATE_INTERFACES = {
    "keras_lossopt.tuning._command": (
        "cli",
        "the command's checks before TensorFlow starts and the parts of a trial: tuning's, but not public API",
    ),
}

# Edges that must stay inside functions, so that importing the first package does not load the second.
FUNCTION_LEVEL_ONLY = {
    ("callbacks", "adversarial"): "RobustnessEvaluation is re-exported lazily: the callbacks do not load the attacks",
}


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
    try:
        return None if value is None else set(ast.literal_eval(value))
    except ValueError:  # built at import (`keras_lossopt.__all__` lists the subpackages with `*`)
        return None


def test_the_table_names_every_subpackage():
    parts = {part_of(module_name(path)) for path in MODULES}
    assert parts == set(ALLOWED), "a new subpackage needs its row in ALLOWED and in docs/architecture.md"
    assert len(IMPORTS) > 50  # the parser sees the package's imports


def test_every_import_follows_the_table():
    wrong = []
    for imp in IMPORTS:
        source, target = part_of(imp.source), part_of(resolved_target(imp))
        if source != target and target not in ALLOWED[source]:
            wrong.append(f"{imp.where} imports {resolved_target(imp)} ({source} may import {sorted(ALLOWED[source])})")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("edge", sorted(FUNCTION_LEVEL_ONLY), ids="->".join)
def test_lazy_edges_stay_inside_functions(edge):
    source, target = edge
    at_top = [
        imp.where
        for imp in IMPORTS
        if part_of(imp.source) == source and part_of(resolved_target(imp)) == target and imp.top_level
    ]
    assert not at_top, (
        f"{source} -> {target} must be imported inside a function ({FUNCTION_LEVEL_ONLY[edge]}): {at_top}"
    )


def test_no_private_name_crosses_a_subpackage():
    """Helpers used by another subpackage are public in their home module (in its `__all__`).

    The shared private modules (`_validation`, `_reduction`, `_targets`) are the bottom layer
    that the table allows; every other private module stays inside its package, except the named
    interfaces of `PRIVATE_INTERFACES`, each imported by its one subpackage and only for the names
    in its `__all__`.
    """
    wrong = []
    for imp in IMPORTS:
        target = resolved_target(imp)
        # `keras_lossopt/__init__.py` is the package itself: its private modules are its own.
        if not cross_part(imp) or part_of(target) in SHARED_PRIVATE or part_of(imp.source) == "":
            continue
        name = None if target != imp.target else imp.name  # None: a module is imported
        private_module = any(piece.startswith("_") for piece in target.split(".")[1:])
        private_name = name and name.startswith("_") and not (name.startswith("__") and name.endswith("__"))
        interface = PRIVATE_INTERFACES.get(target)
        if interface is not None and part_of(imp.source) == interface[0] and not private_name:
            if name is None or name not in (static_all(target) or ()):
                wrong.append(f"{imp.where} imports {target} {name or ''}, which is not in that interface's __all__")
            continue
        if private_module or private_name:
            wrong.append(f"{imp.where} imports the private {target} {name or ''}")
            continue
        exported = static_all(target)
        if name and exported is not None and name not in exported:
            wrong.append(f"{imp.where} imports {target}.{name}, which is not in that module's __all__")
    assert not wrong, "\n".join(wrong)


def test_modules_import_each_other_without_cycles():
    """Imports between modules form no cycle, counting those inside functions too.

    A package imports its modules in its `__init__.py` and a module may import its own
    package's public names, so the edges into and out of `__init__` modules are left out:
    a cycle is one between modules that define things.
    """
    packages = {module_name(path) for path in MODULES if path.name == "__init__.py"}
    graph: dict[str, set[str]] = {}
    for imp in IMPORTS:
        target = resolved_target(imp)
        if imp.source not in packages and target not in packages and target != imp.source:
            graph.setdefault(imp.source, set()).add(target)
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


# The subpackages that `keras_lossopt._registration` imports once Keras has loaded.
REGISTERING = ("losses", "metrics", "shaping", "callbacks", "adversarial")


def test_registering_subpackages_take_no_name_from_another_package_init_at_import():
    """Registration may run while a package's `__init__` is half executed (Keras loading inside it).

    A registering subpackage therefore imports another subpackage's modules, never names
    from its `__init__`, at the top of a module; inside a function it may (that runs later).
    """
    packages = {module_name(path) for path in MODULES if path.name == "__init__.py"}
    wrong = [
        f"{imp.where} takes {imp.name} from {imp.target}"
        for imp in IMPORTS
        if imp.top_level and part_of(imp.source) in REGISTERING and cross_part(imp) and resolved_target(imp) in packages
    ]
    assert not wrong, "\n".join(wrong)
