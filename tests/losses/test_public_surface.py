"""The public surface of `keras_lossopt.losses`/`metrics`: exports, per-sample functions, old names."""

import importlib

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
    (losses.FocalLoss(gamma=1.0, from_logits=True), losses.focal_loss, {"gamma": 1.0, "from_logits": True}, "sparse"),
    (
        losses.AsymmetricLoss(gamma_neg=2.0),
        losses.asymmetric_loss,
        {"gamma_neg": 2.0},
        "multilabel",
    ),
    (
        losses.LDAMLoss([50, 10, 2], max_margin=0.4, s=10.0),
        losses.ldam_loss,
        {"class_counts": [50, 10, 2], "max_margin": 0.4, "s": 10.0},
        "logits",
    ),
    (losses.HausdorffDTLoss(alpha=1.0), losses.hausdorff_dt_loss, {"alpha": 1.0}, "image"),
    (losses.HausdorffERLoss(erosions=3), losses.hausdorff_er_loss, {"erosions": 3}, "image"),
    (losses.BoundaryLoss(include_background=False), losses.boundary_loss, {"include_background": False}, "image"),
    (losses.SoftClDiceLoss(iterations=2), losses.soft_cldice_loss, {"iterations": 2}, "image"),
    (losses.SoftDiceClDiceLoss(alpha=0.3), losses.soft_dice_cldice_loss, {"alpha": 0.3}, "image"),
    (
        losses.LogitAdjustedLoss(class_counts=[50, 10, 2], tau=0.5),
        losses.logit_adjusted_loss,
        {"log_priors": np.log(np.array([50, 10, 2]) / 62), "tau": 0.5},
        "logits",
    ),
    (
        losses.DiceCELoss(ce_weight=0.5, ignore_index=2),
        losses.dice_ce_loss,
        {"ce_weight": 0.5, "ignore_index": 2},
        "image",
    ),
    (
        losses.DiceFocalLoss(dice_weight=0.3, gamma=1.0, mode="binary", from_logits=True),
        losses.dice_focal_loss,
        {"dice_weight": 0.3, "gamma": 1.0, "mode": "binary", "from_logits": True},
        "binary-image",
    ),
]
# Classes without a per-sample function of their own, each with the reason.
WITHOUT_FUNCTION = {
    "LossFunctionBase": "the base class",
    "SparseTargetLoss": "the base class of the softmax losses",
    "CompositeLoss": "a sum of other losses, each with its function",
    "ClassBalancedLoss": "a wrapper that weights another loss (class_balanced_weights is its formula)",
}


def test_every_loss_class_has_a_function_in_the_table():
    classes = {name for name in losses.__all__ if name.endswith("Loss")} - set(WITHOUT_FUNCTION)
    tested = {type(loss).__name__ for loss, *_ in CLASS_AND_FUNCTION}
    assert classes - tested == set(), "add the class and its function to CLASS_AND_FUNCTION"


@pytest.mark.parametrize("loss, function, kwargs, data", CLASS_AND_FUNCTION, ids=lambda x: getattr(x, "name", ""))
def test_each_loss_class_has_its_per_sample_function(loss, function, kwargs, data):
    rng = np.random.default_rng(0)
    if data == "sparse":
        y_true, y_pred = rng.integers(0, 3, size=6), rng.dirichlet(np.ones(3), size=6).astype("float32")
    elif data == "image":
        y_true, y_pred = rng.integers(0, 3, size=(2, 4, 4)), rng.dirichlet(np.ones(3), size=(2, 4, 4)).astype("float32")
    elif data == "multilabel":
        y_true = rng.integers(0, 2, size=(6, 4)).astype("float32")
        y_pred = rng.uniform(0.05, 0.95, size=(6, 4)).astype("float32")
    elif data == "logits":
        y_true, y_pred = rng.integers(0, 3, size=6), rng.normal(size=(6, 3)).astype("float32")
    else:
        y_true = rng.integers(0, 2, size=(2, 4, 4, 1)).astype("float32")
        y_pred = rng.normal(size=(2, 4, 4, 1)).astype("float32")
    loss = type(loss).from_config({**loss.get_config(), "reduction": "none"})
    np.testing.assert_allclose(
        np.asarray(function(y_true, y_pred, **kwargs)), np.asarray(loss(y_true, y_pred)), rtol=1e-6
    )
    assert function.__name__.endswith("_loss") and type(loss).__name__.endswith("Loss")


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
