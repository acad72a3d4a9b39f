"""The public surface of `keras_lossopt.losses`/`metrics`: exports, per-sample functions, old names."""

import importlib
import warnings

import keras
import numpy as np
import pytest

import keras_lossopt.losses as losses
import keras_lossopt.metrics as metrics


def test_metrics_use_only_public_loss_names():
    import inspect

    source = inspect.getsource(importlib.import_module("keras_lossopt.metrics.segmentation"))
    assert "from keras_lossopt.losses." not in source and "import keras_lossopt.losses." not in source


CLASS_AND_FUNCTION = [
    (losses.FocalLoss(gamma=1.5), losses.focal_loss, {"gamma": 1.5}, "sparse"),
    (losses.PolyLoss(epsilon=0.5), losses.poly_loss, {"epsilon": 0.5}, "sparse"),
    (losses.GeneralizedCrossEntropyLoss(q=0.5), losses.generalized_cross_entropy_loss, {"q": 0.5}, "sparse"),
    (losses.SymmetricCrossEntropyLoss(), losses.symmetric_cross_entropy_loss, {}, "sparse"),
    (losses.DiceLoss(log_dice=True), losses.dice_loss, {"log_dice": True}, "image"),
    (losses.JaccardLoss(), losses.jaccard_loss, {}, "image"),
    (losses.TverskyLoss(alpha=0.2, beta=0.8), losses.tversky_loss, {"alpha": 0.2, "beta": 0.8}, "image"),
    (losses.FocalTverskyLoss(gamma=0.5), losses.focal_tversky_loss, {"gamma": 0.5}, "image"),
    (losses.GeneralizedDiceLoss(), losses.generalized_dice_loss, {}, "image"),
    (losses.LovaszSoftmaxLoss(per_image=True), losses.lovasz_softmax_loss, {"per_image": True}, "image"),
    (losses.LovaszHingeLoss(), losses.lovasz_hinge_loss, {}, "binary-image"),
]


@pytest.mark.parametrize("loss, function, kwargs, data", CLASS_AND_FUNCTION, ids=lambda x: getattr(x, "name", ""))
def test_each_loss_class_has_its_per_sample_function(loss, function, kwargs, data):
    rng = np.random.default_rng(0)
    if data == "sparse":
        y_true, y_pred = rng.integers(0, 3, size=6), rng.dirichlet(np.ones(3), size=6).astype("float32")
    elif data == "image":
        y_true, y_pred = rng.integers(0, 3, size=(2, 4, 4)), rng.dirichlet(np.ones(3), size=(2, 4, 4)).astype("float32")
    else:
        y_true = rng.integers(0, 2, size=(2, 4, 4, 1)).astype("float32")
        y_pred = rng.normal(size=(2, 4, 4, 1)).astype("float32")
    loss = type(loss).from_config({**loss.get_config(), "reduction": "none"})
    np.testing.assert_allclose(
        np.asarray(function(y_true, y_pred, **kwargs)), np.asarray(loss(y_true, y_pred)), rtol=1e-6
    )
    assert function.__name__.endswith("_loss") and type(loss).__name__.endswith("Loss")


@pytest.mark.parametrize(
    "old, new",
    [
        ("GeneralizedCrossEntropy", "GeneralizedCrossEntropyLoss"),
        ("SymmetricCrossEntropy", "SymmetricCrossEntropyLoss"),
        ("generalized_cross_entropy", "generalized_cross_entropy_loss"),
        ("symmetric_cross_entropy", "symmetric_cross_entropy_loss"),
    ],
)
def test_old_names_still_work_with_a_deprecation_warning(old, new):
    with pytest.warns(DeprecationWarning, match=new):
        assert getattr(losses, old) is getattr(losses, new)
    with pytest.warns(DeprecationWarning, match=new):
        from keras_lossopt.losses import noise_robust

        assert getattr(noise_robust, old) is getattr(losses, new)


def test_configs_saved_under_the_old_class_names_still_load():
    for old, new_class in [
        ("GeneralizedCrossEntropy", losses.GeneralizedCrossEntropyLoss),
        ("SymmetricCrossEntropy", losses.SymmetricCrossEntropyLoss),
    ]:
        config = keras.saving.serialize_keras_object(new_class(from_logits=True))
        config["class_name"] = old
        config["registered_name"] = f"keras_lossopt>{old}"
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # loading an old file is not deprecated use
            restored = keras.saving.deserialize_keras_object(config)
        assert type(restored) is new_class and restored.from_logits
        assert isinstance(losses.get(old), new_class)


def test_segmentation_docstrings_are_written_in_place():
    for cls in (losses.DiceLoss, losses.JaccardLoss, losses.TverskyLoss, losses.FocalTverskyLoss, metrics.DiceScore):
        assert "{" not in cls.__doc__.split("Examples:")[0]
        example = cls.__doc__.split("Examples:")[1].split("References:")[0]
        indents = {len(line) - len(line.lstrip()) for line in example.splitlines() if line.strip()}
        assert indents == {8}, f"{cls.__name__} example lines are misaligned: {sorted(indents)}"


def _run(code, cwd):
    import os
    import subprocess
    import sys

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": os.getcwd()}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_import_keras_lossopt_imports_no_tensorflow_and_no_optional_packages(tmp_path):
    result = _run(
        "import sys, keras_lossopt; heavy = {'tensorflow', 'keras', 'keras_tuner', 'matplotlib', 'sklearn', 'mlxtend'};"
        "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))",
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.slow
@pytest.mark.parametrize("imports", ["import keras, keras_lossopt", "import keras_lossopt, keras"])
def test_saved_model_loads_in_a_fresh_process_without_custom_objects(tmp_path, imports):
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(3)(inputs))
    model.compile(loss=losses.FocalLoss(from_logits=True, gamma=1.0), metrics=[metrics.MacroF1(3)])
    x, y = np.random.default_rng(0).normal(size=(8, 4)).astype("float32"), np.arange(8) % 3
    model.fit(x, y, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    np.save(tmp_path / "x.npy", x)
    code = (
        f"{imports}; import numpy as np; m = keras.models.load_model('m.keras');"
        "logs = m.evaluate(np.load('x.npy'), np.arange(8) % 3, verbose=0, return_dict=True);"
        "print(type(m.loss).__name__, m.loss.gamma, sorted(logs));"
        "names = ['AdversarialModel', 'ProjectedGradientDescent', 'GradientMonitor', 'CompositeLoss', 'DiceScore'];"
        "print(all(keras.saving.get_registered_object('keras_lossopt>' + n) for n in names))"
    )
    result = _run(code, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert lines[-2].startswith("FocalLoss 1.0") and "'macro_f1'" in lines[-2]
    assert lines[-1] == "True"


def test_the_search_vocabulary_resolves_with_get():
    from keras_lossopt.tuning.search_space import LOSS_CANDIDATES

    for task, candidates in LOSS_CANDIDATES.items():
        for name, candidate in candidates.items():
            try:
                loss = losses.get(name, **candidate.fixed) if hasattr(candidate, "fixed") else losses.get(name)
            except ValueError as error:
                assert candidate.needs_class_counts and "class_counts" in str(error), (task, name, error)
                continue
            assert isinstance(loss, keras.losses.Loss), (task, name)


@pytest.mark.slow
@pytest.mark.parametrize(
    "first",
    [
        "losses",
        "losses.focal",
        "metrics",
        "shaping",
        "shaping.adaptive",
        "callbacks",
        "adversarial",
        "tuning",
        "datasets",
    ],
)
def test_any_subpackage_imported_first_registers_every_class(tmp_path, first):
    # Keras finishes loading in the middle of our own import here (e.g. losses/__init__ -> asymmetric
    # -> keras): registration runs then, and must not meet a half-initialized package.
    code = (
        f"import keras_lossopt.{first}, keras;"
        "names = ['FocalLoss', 'DiceScore', 'CompositeLoss', 'GradientMonitor', 'AdversarialModel'];"
        "print(all(keras.saving.get_registered_object('keras_lossopt>' + n) for n in names))"
    )
    result = _run(code, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "True"
