"""Public docstrings parse as Google style (what mkdocstrings renders for the docs site)."""

import inspect

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
