"""docs/architecture.md lists every module of the package in its Layout block."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent


def layout_block() -> str:
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    section = text[text.index("## Layout") :]
    return section[section.index("```") + 3 : section.index("```", section.index("```") + 3)]


def test_the_layout_lists_every_module_under_its_package():
    listed, package = set(), None
    for line in layout_block().splitlines():
        match = re.match(r"^( *)(\S+)", line)
        if not match:
            continue
        indent, entry = len(match.group(1)), match.group(2)
        if indent == 2 and entry.endswith("/"):
            package = entry.rstrip("/")
        elif indent == 2:
            package = None
        if entry.endswith(".py") and indent in (2, 4):
            listed.add(entry if indent == 2 else f"{package}/{entry}")
    modules = {str(path.relative_to(ROOT / "keras_lossopt")) for path in (ROOT / "keras_lossopt").rglob("*.py")}
    modules -= {path for path in modules if path.endswith("__init__.py") and "/" in path}
    assert sorted(modules - listed) == [], "add these modules to the Layout block of docs/architecture.md"
    assert sorted(listed - modules) == [], "these modules in the Layout block no longer exist"
