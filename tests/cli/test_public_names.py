"""Each package of the command and the search exports exactly what its modules list in `__all__`."""

import importlib
import pkgutil

import pytest

PACKAGES = ["keras_lossopt.cli", "keras_lossopt.tuning", "keras_lossopt.datasets", "keras_lossopt.shaping"]
# The command's entry module (`keras_lossopt.cli.main:main`); a package attribute `main` is this module.
ENTRY_MODULES = {"keras_lossopt.cli.main"}


@pytest.mark.parametrize("package_name", PACKAGES)
def test_package_all_is_the_union_of_its_modules_all(package_name):
    package = importlib.import_module(package_name)
    from_modules = {}
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith("_") or f"{package_name}.{info.name}" in ENTRY_MODULES:
            continue
        module = importlib.import_module(f"{package_name}.{info.name}")
        assert hasattr(module, "__all__"), module.__name__
        for name in module.__all__:
            assert name not in from_modules, f"{name} is listed by {from_modules.get(name)} and {info.name}"
            from_modules[name] = module
    assert sorted(package.__all__) == sorted(from_modules)
    for name, module in from_modules.items():
        assert getattr(package, name) is getattr(module, name), name
