"""MkDocs hook: publish the notebooks of `examples/` as pages under `examples/`.

The notebooks live once, in `examples/` at the top of the repository, where Colab and the
test suite open them; this hook hands them to MkDocs (and so to mkdocs-jupyter) as if they
were in the docs folder, so the site never carries a stale copy.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

_EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


# Before the plugins' on_files, so that mkdocs-jupyter sees the notebooks and turns them into pages.
@event_priority(100)
def on_files(files, config):
    for notebook in sorted(_EXAMPLES.glob("*.ipynb")):
        files.append(
            File(
                f"examples/{notebook.name}",
                src_dir=str(_EXAMPLES.parent),
                dest_dir=config["site_dir"],
                use_directory_urls=config["use_directory_urls"],
            )
        )
    return files
