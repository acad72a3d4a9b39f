"""Public docstrings parse as Google style (what mkdocstrings renders for the docs site)."""

import inspect
import pathlib

import pytest

import keras_lossopt

SECTIONS = {"Args:", "Returns:", "Raises:", "Example:", "Examples:", "References:", "Formula:", "Attributes:", "Note:"}
SUBPACKAGES = ["losses", "metrics", "callbacks", "adversarial", "tuning", "datasets", "shaping"]


def public_objects():
    for package in SUBPACKAGES:
        module = getattr(keras_lossopt, package)
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                yield f"{package}.{name}", obj


@pytest.mark.parametrize("name, obj", list(public_objects()), ids=lambda v: v if isinstance(v, str) else "")
def test_docstring_has_a_summary_and_well_indented_sections(name, obj):
    doc = inspect.getdoc(obj)
    assert doc and doc.splitlines()[0].strip(), f"{name} has no summary line"
    lines = doc.splitlines()
    for i, line in enumerate(lines):
        if line.strip() != "Args:" or line != "Args:":
            continue
        for entry in lines[i + 1 :]:
            if not entry.strip():
                continue
            if entry in SECTIONS:
                break
            assert entry.startswith("    "), f"{name}: argument line not indented under Args: {entry!r}"


def test_doctest_sections_are_titled_examples():
    # griffe (mkdocstrings' parser) knows "Examples:" as the section of doctests; a section
    # titled "Example:" is an admonition whose `>>>` lines render as nested block quotes,
    # and bracketed doctest output in it becomes a broken cross-reference.
    package_dir = pathlib.Path(keras_lossopt.__file__).parent
    offenders = [
        f"{path.relative_to(package_dir.parent)}:{number}"
        for path in sorted(package_dir.rglob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if line.strip() == "Example:"
    ]
    assert not offenders, f"title these docstring sections 'Examples:': {offenders}"
