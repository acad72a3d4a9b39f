"""The CI script's gates can fail: nothing in `.ci/run` hides what a gate would count.

`mkdocs build --strict --quiet` exits 0 on any number of warnings (the warnings that are not
printed are not counted either), which is how 733 documentation warnings passed CI unseen.
These tests read the script as CI runs it, and run its mkdocs command on a site with one
broken link to see it fail.
"""

import os
import pathlib
import re
import shlex
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
CI_SCRIPT = ROOT / ".ci" / "run"

# Options or shell constructs that keep a failing gate from failing CI.
MKDOCS_HIDING = ("--quiet", "-q", "--no-strict", "--verbose=false")
SHELL_HIDING = ("|| true", "|| :", "2>/dev/null", ">/dev/null", "&>/dev/null", "; true")


def ci_commands():
    """The script's command lines, without comments and blank lines."""
    lines = CI_SCRIPT.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def mkdocs_build_commands():
    return [line for line in ci_commands() if re.search(r"\bmkdocs build\b", line) and "echo" not in line]


def test_the_script_stops_at_the_first_failing_command():
    assert "set -euo pipefail" in ci_commands(), "without `set -e` a failing gate does not stop .ci/run"


def test_the_docs_site_is_built_strictly_with_every_warning_printed():
    builds = mkdocs_build_commands()
    assert len(builds) == 1, f".ci/run should build the site once, found: {builds}"
    words = shlex.split(builds[0])
    assert "--strict" in words, f"the site build is not strict: {builds[0]}"
    hiding = [word for word in words if word in MKDOCS_HIDING]
    assert not hiding, f"{hiding} keeps warnings out of the strict count: {builds[0]}"
    assert not [s for s in SHELL_HIDING if s in builds[0]], f"the build's failure is hidden: {builds[0]}"


@pytest.mark.parametrize("gate", ["ruff check .", "ruff format --check ."])
def test_lint_and_format_gates_can_fail(gate):
    lines = [line for line in ci_commands() if gate in line and "echo" not in line]
    assert lines, f".ci/run does not run `{gate}`"
    for line in lines:
        assert "--exit-zero" not in line and not [s for s in SHELL_HIDING if s in line], line


def test_mkdocs_yml_keeps_the_check_of_argument_names_on():
    # warn_missing_types is off on purpose (no annotations); the check that an Args name is
    # in the signature is what catches documentation bugs and must stay on.
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    assert re.search(r"^strict:\s*true\s*$", config, re.M)
    assert not re.search(r"warn_unknown_params:\s*false", config)
    assert not re.search(r"^\s*warnings:\s*false", config, re.M)


def test_the_ci_mkdocs_command_fails_on_a_single_warning(tmp_path):
    pytest.importorskip("mkdocs")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "index.md").write_text("# Site\n\nSee [a page](missing.md).\n", encoding="utf-8")
    (tmp_path / "mkdocs.yml").write_text("site_name: gate\nnav:\n  - index.md\n", encoding="utf-8")
    words = shlex.split(mkdocs_build_commands()[0])
    options = words[words.index("build") + 1 :]
    # The script's own --site-dir is a shell substitution; build into the temporary folder.
    if "--site-dir" in options:
        del options[options.index("--site-dir") : options.index("--site-dir") + 2]
    command = [sys.executable, "-m", "mkdocs", "build", *options, "--site-dir", str(tmp_path / "site")]
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0, f"{shlex.join(command[2:])} passed a site with a broken link"
    assert "missing.md" in result.stdout + result.stderr, "the warning that failed the build was not printed"


# Every tool whose output decides CI, by its distribution name in the dev extras.
GATING_TOOLS = (
    "pytest",
    "pytest-timeout",
    "pytest-xdist",
    "ruff",
    "mkdocs",
    "mkdocs-material",
    "mkdocstrings",
    "mkdocstrings-python",
    "griffelib",
    "mkdocs-autorefs",
    "mkdocs-jupyter",
    "pymdown-extensions",
)


def dev_requirements():
    import configparser

    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg", encoding="utf-8")
    lines = parser["options.extras_require"]["dev"].splitlines()
    requirements = {}
    for line in lines:
        line = line.split("#")[0].strip()
        if line:
            name = re.match(r"[A-Za-z0-9._-]+", line).group(0).lower()
            requirements[name] = line[len(name) :].split(";")[0].replace("[python]", "").strip()
    return requirements


@pytest.mark.parametrize("tool", GATING_TOOLS)
def test_each_gating_tool_has_a_tested_version_range(tool):
    specifier = dev_requirements().get(tool)
    assert specifier is not None, f"{tool} decides CI but is not pinned in setup.cfg's dev extras"
    lower = re.search(r">=\s*([0-9][0-9.]*)", specifier)
    upper = re.search(r"<\s*([0-9][0-9.]*)", specifier)
    assert lower and upper, f"{tool}{specifier}: a gating tool needs a lower and an upper bound"
    low, high = [int(part) for part in lower.group(1).split(".")], [int(part) for part in upper.group(1).split(".")]
    # The rule of README.md's "Updating the CI tools": below the next minor release.
    assert high == [low[0], low[1] + 1], f"{tool}{specifier}: the upper bound should be the next minor release"
