"""Each subpackage exports exactly what its public modules list in `__all__`.

A module whose name starts with an underscore is private to its package; every other module's
`__all__` is part of the package's `__all__`, and the package exports nothing else except the
re-exports listed in `REEXPORTS`. So a reader finds every public name in one place: the package.
"""

import importlib
import pkgutil

import pytest

import keras_lossopt

PACKAGES = [f"keras_lossopt.{name}" for name in keras_lossopt.__all__ if name != "__version__"] + ["keras_lossopt.cli"]
# The command's entry module (`keras_lossopt.cli.main:main`); a package attribute `main` would clash with it.
ENTRY_MODULES = {"keras_lossopt.cli.main"}
# Names a package exports from a module of another package: name -> the defining module.
REEXPORTS = {
    "keras_lossopt.callbacks": {
        # Moved next to the attacks; loaded on first use, so the callbacks do not import them.
        "RobustnessEvaluation": "keras_lossopt.adversarial.callback",
        "plot_adversarial_grid": "keras_lossopt.adversarial.callback",
    },
    "keras_lossopt.shaping": {
        # The loss algebra lives with the losses; shaping schedules and balances its weights.
        "CompositeLoss": "keras_lossopt.losses.composite",
        "FunctionTerm": "keras_lossopt.losses.composite",
        "WeightPenalty": "keras_lossopt.losses.weight_penalty",
    },
}


def public_modules(package_name):
    package = importlib.import_module(package_name)
    for info in pkgutil.iter_modules(package.__path__):
        qualified = f"{package_name}.{info.name}"
        if not info.name.startswith("_") and qualified not in ENTRY_MODULES:
            yield importlib.import_module(qualified)


def test_every_subpackage_is_checked():
    found = {info.name for info in pkgutil.iter_modules(keras_lossopt.__path__) if info.ispkg}
    assert {f"keras_lossopt.{name}" for name in found} == set(PACKAGES)
    assert sorted(keras_lossopt.__all__) == sorted(["__version__", *(name for name in found if name != "cli")])


@pytest.mark.parametrize("package_name", PACKAGES)
def test_package_all_is_the_union_of_its_modules_all(package_name):
    package = importlib.import_module(package_name)
    from_modules = {}
    for module in public_modules(package_name):
        assert hasattr(module, "__all__"), f"{module.__name__} is public and has no __all__"
        for name in module.__all__:
            assert name not in from_modules, f"{name} is listed by {from_modules[name].__name__} and {module.__name__}"
            from_modules[name] = module
    reexports = REEXPORTS.get(package_name, {})
    assert sorted(package.__all__) == sorted([*from_modules, *reexports])
    for name, module in from_modules.items():
        assert getattr(package, name) is getattr(module, name), name
    for name, home in reexports.items():
        assert getattr(package, name) is getattr(importlib.import_module(home), name), name
        assert name in importlib.import_module(home).__all__


@pytest.mark.parametrize("package_name", PACKAGES)
def test_dir_lists_the_public_names(package_name):
    package = importlib.import_module(package_name)
    assert set(package.__all__) <= set(dir(package))
