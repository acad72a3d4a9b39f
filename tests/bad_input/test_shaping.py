"""Bad input to keras_lossopt.shaping: clear errors at construction or at the first call (table-driven)."""

import keras
import numpy as np
import pytest

from keras_lossopt.losses import DiceLoss, FocalLoss
from keras_lossopt.shaping import (
    CompositeLoss,
    ConfidencePenalty,
    CosineSchedule,
    DynamicWeightAveraging,
    FunctionTerm,
    GradNorm,
    LinearWarmup,
    LossWeightScheduler,
    OutputPenalty,
    RewardTerm,
    StepSchedule,
    UncertaintyWeighting,
    dwa_weights,
    task_losses,
)


def _batch_mean(y_true, y_pred):
    return keras.ops.mean(y_pred)  # already reduced over the batch: not one value per sample


def _over_classes(y_true, y_pred):
    return keras.ops.mean(y_pred, axis=0)  # reduces the batch axis instead of the class axis


CONSTRUCTION = [
    ("no terms", lambda: CompositeLoss({}), "at least one loss term"),
    ("term not a loss", lambda: CompositeLoss({"a": 3.0}), "Term 'a' must be a keras.losses.Loss"),
    ("unknown loss name", lambda: CompositeLoss({"a": "focall"}), "focal"),
    ("term name not an identifier", lambda: CompositeLoss({"my loss": FocalLoss()}), "identifiers"),
    (
        "negative weight",
        lambda: CompositeLoss({"focal": FocalLoss()}, weights={"focal": -1.0}),
        "must be finite and >= 0",
    ),
    ("nan weight", lambda: CompositeLoss([FocalLoss()], weights=[float("nan")]), "must be finite and >= 0"),
    ("weight for unknown term", lambda: CompositeLoss({"focal": FocalLoss()}, weights={"dise": 1.0}), "focal"),
    ("weights list length", lambda: CompositeLoss([FocalLoss(), DiceLoss()], weights=[1.0]), "2 terms"),
    ("negative scale", lambda: -0.5 * DiceLoss(), "must be finite and >= 0"),
    ("nested composite", lambda: CompositeLoss({"a": FocalLoss() + DiceLoss()}), "itself a CompositeLoss"),
    ("unknown reduction", lambda: CompositeLoss([FocalLoss()], reduction="avg"), "reduction"),
    ("penalty beta", lambda: ConfidencePenalty(beta=-0.1), "beta"),
    ("penalty mode", lambda: ConfidencePenalty(mode="binary_focal"), "mode"),
    ("output penalty fn", lambda: OutputPenalty(3), "`fn` must be a function"),
    ("reward weight", lambda: RewardTerm(lambda y, p: p, weight=-1.0), "weight"),
    ("reward samples", lambda: RewardTerm(lambda y, c: c, differentiable=False, num_samples=1), "num_samples"),
    ("warm-up steps", lambda: LinearWarmup(1.0, steps=0), "steps"),
    ("cosine negative", lambda: CosineSchedule(-1.0, 0.0, steps=3), "start"),
    ("step boundaries", lambda: StepSchedule([3, 2], [1.0, 2.0, 3.0]), "strictly increasing"),
    ("step values", lambda: StepSchedule([3], [1.0]), "len\\(boundaries\\) \\+ 1"),
    ("scheduler empty", lambda: LossWeightScheduler({}), "non-empty"),
    ("scheduler not callable", lambda: LossWeightScheduler({"dice": 0.5}), "must be a WeightSchedule"),
    ("scheduler by", lambda: LossWeightScheduler({"dice": LinearWarmup(1.0, 2)}, by="batch"), "by"),
    ("dwa temperature", lambda: DynamicWeightAveraging(temperature=0.0), "temperature"),
    ("dwa history", lambda: dwa_weights([[1.0, 2.0], [1.0]]), "one loss per term"),
    ("dwa zero loss", lambda: dwa_weights([[0.0, 1.0], [1.0, 1.0]]), "positive losses"),
    ("gradnorm alpha", lambda: GradNorm(alpha=-1.0), "alpha"),
    ("gradnorm learning rate", lambda: GradNorm(learning_rate=-0.1), "learning_rate"),
    ("gradnorm layer", lambda: GradNorm(shared_layer=3), "shared_layer"),
    ("uncertainty initial", lambda: UncertaintyWeighting(initial_log_variance=float("inf")), "finite"),
    ("task losses", lambda: task_losses([FocalLoss()]), "non-empty dict"),
]


@pytest.mark.parametrize(("case", "build", "message"), CONSTRUCTION, ids=[c[0] for c in CONSTRUCTION])
def test_construction_errors(case, build, message):
    with pytest.raises(ValueError, match=message):
        build()


FIRST_CALL = [
    ("function returns a scalar", lambda: CompositeLoss({"mean": _batch_mean}), "returned a single value"),
    ("function reduces the batch axis", lambda: CompositeLoss({"cls": _over_classes}), "one value per sample"),
    ("function term alone", lambda: FunctionTerm(_batch_mean), "returned a single value"),
    ("output penalty scalar", lambda: OutputPenalty(lambda p: keras.ops.sum(p)), "returned a single value"),
]


@pytest.mark.parametrize(("case", "build", "message"), FIRST_CALL, ids=[c[0] for c in FIRST_CALL])
def test_first_call_errors_eager_and_in_a_compiled_fit(case, build, message):
    x = np.random.default_rng(0).normal(size=(8, 3)).astype("float32")
    with pytest.raises(ValueError, match=message):
        build()(np.zeros((8, 3), "float32"), x)
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(3)(inputs))
    model.compile("sgd", loss=build(), jit_compile=True)
    with pytest.raises(ValueError, match=message):
        model.fit(x, np.zeros((8, 3), "float32"), verbose=0)


def _compiled(loss):
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(3)(inputs))
    model.compile("sgd", loss=loss)
    return model


def _fit(model, callback):
    model.fit(np.zeros((4, 3), "float32"), np.zeros((4, 3), "float32"), epochs=1, verbose=0, callbacks=[callback])


def _reward(y_true, y_pred):
    return keras.ops.mean(y_pred, axis=-1)


TRAINING = [
    (
        "unknown term in a schedule",
        lambda: (
            _compiled(CompositeLoss({"mse": "mse", "dice": "mae"})),
            LossWeightScheduler({"dise": LinearWarmup(1, 2)}),
        ),
        "schedules term.*'dice'",
    ),
    (
        "negative schedule value",
        lambda: (_compiled(CompositeLoss({"mse": "mse"})), LossWeightScheduler({"mse": lambda t: -1.0})),
        "returned -1.0 at t=0",
    ),
    (
        "schedule by step with steps_per_execution",
        lambda: (_steps_per_execution_model(), LossWeightScheduler({"mse": LinearWarmup(1, 2)}, by="step")),
        "steps_per_execution=1",
    ),
    (
        "callback without a composite",
        lambda: (_compiled("mse"), DynamicWeightAveraging()),
        "needs a model compiled with",
    ),
    (
        "uncertainty with a reward",
        lambda: (_compiled(CompositeLoss({"mse": "mse", "gain": RewardTerm(_reward)})), UncertaintyWeighting()),
        "reward terms",
    ),
    (
        "duplicate term names across outputs",
        lambda: (
            _two_outputs({"a": CompositeLoss({"x": "mse"}), "b": CompositeLoss({"x": "mae"})}),
            LossWeightScheduler({"x": LinearWarmup(1, 2)}),
        ),
        "used by two composite losses",
    ),
    (
        "gradnorm on a multi-output model without a shared layer",
        lambda: (_two_outputs(task_losses({"a": "mse", "b": "mse"})), GradNorm()),
        "needs `shared_layer`",
    ),
]


def _steps_per_execution_model():
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(3)(inputs))
    model.compile("sgd", loss=CompositeLoss({"mse": "mse"}), steps_per_execution=2)
    return model


def _two_outputs(loss):
    inputs = keras.Input((3,))
    model = keras.Model(
        inputs, {"a": keras.layers.Dense(3, name="a")(inputs), "b": keras.layers.Dense(3, name="b")(inputs)}
    )
    model.compile("sgd", loss=loss)
    return model


@pytest.mark.parametrize(("case", "build", "message"), TRAINING, ids=[c[0] for c in TRAINING])
def test_errors_when_training_starts(case, build, message):
    model, callback = build()
    with pytest.raises(ValueError, match=message):
        if len(model.outputs) > 1:
            zeros = np.zeros((4, 3), "float32")
            model.fit(np.zeros((4, 3), "float32"), {"a": zeros, "b": zeros}, epochs=1, verbose=0, callbacks=[callback])
        else:
            _fit(model, callback)


# -- one weight, one owner; schedules of the wrong form; DWA on a negative term ------------------


def _focal_mse():
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(3)(inputs))
    model.compile("sgd", loss=CompositeLoss({"ce": FocalLoss(from_logits=True), "mse": "mse"}))
    return model


def _fit_labels(model, callbacks, epochs=1):
    x = np.random.default_rng(0).normal(size=(8, 3)).astype("float32")
    return model.fit(x, np.eye(3, dtype="float32")[np.arange(8) % 3], epochs=epochs, verbose=0, callbacks=callbacks)


TWO_OWNERS = [
    ("schedule and uncertainty", lambda: [LossWeightScheduler({"mse": lambda t: 0.0}), UncertaintyWeighting()]),
    ("uncertainty and schedule", lambda: [UncertaintyWeighting(), LossWeightScheduler({"mse": lambda t: 0.0})]),
    ("schedule and gradnorm", lambda: [LossWeightScheduler({"mse": lambda t: 0.0}), GradNorm()]),
    ("schedule and dwa", lambda: [LossWeightScheduler({"ce": lambda t: 1.0}), DynamicWeightAveraging()]),
    ("dwa and gradnorm", lambda: [DynamicWeightAveraging(), GradNorm()]),
    (
        "two schedules",
        lambda: [LossWeightScheduler({"mse": lambda t: 1.0}), LossWeightScheduler({"mse": lambda t: 0.0})],
    ),
]


@pytest.mark.parametrize(("case", "callbacks"), TWO_OWNERS, ids=[c[0] for c in TWO_OWNERS])
def test_two_callbacks_setting_one_weight_are_refused_before_training(case, callbacks):
    model = _focal_mse()
    two = r"Term '(ce|mse)' would have its weight set by two callbacks, .* and .*"
    # Uncertainty weighting first has already switched the composite to its log-variances.
    ignored = r"Term 'mse' is weighted by uncertainty .* ignores the term weights LossWeightScheduler"
    with pytest.raises(ValueError, match=ignored if case == "uncertainty and schedule" else two):
        _fit_labels(model, callbacks())
    assert model.optimizer.iterations.numpy() == 0


def test_one_callback_per_term_and_later_fits_with_other_callbacks_are_accepted():
    model = _focal_mse()
    history = _fit_labels(model, [LossWeightScheduler({"mse": lambda t: 0.0})])
    assert history.history["weight_mse"] == [0.0]
    history = _fit_labels(model, [DynamicWeightAveraging()])
    assert history.history["weight_mse"] == [1.0]


def test_a_schedule_after_uncertainty_weighting_is_refused_not_ignored():
    model = _focal_mse()
    _fit_labels(model, [UncertaintyWeighting()])
    with pytest.raises(ValueError, match=r"Term 'mse' is weighted by uncertainty .* ignores the term weights"):
        _fit_labels(model, [LossWeightScheduler({"mse": lambda t: 0.0})])


SCHEDULE_FORMS = [
    ("two arguments", lambda epoch, step: 1.0, r"schedules\['dice'\]` must be a function of 1 positional argument"),
    ("no argument", lambda: 1.0, r"Received: <lambda>\(\)"),
    ("keyword only", lambda *, t: 1.0, r"Received: <lambda>\(\*, t\)"),
]


@pytest.mark.parametrize(("case", "schedule", "message"), SCHEDULE_FORMS, ids=[c[0] for c in SCHEDULE_FORMS])
def test_schedules_of_the_wrong_form_are_refused_at_construction(case, schedule, message):
    with pytest.raises(TypeError, match=message):
        LossWeightScheduler({"dice": schedule})


@pytest.mark.parametrize("schedule", [lambda t, scale=2.0: scale, lambda *times: 1.0, LinearWarmup(1.0, 3), abs])
def test_schedules_that_take_t_are_accepted(schedule):
    assert LossWeightScheduler({"dice": schedule}).schedules["dice"] is schedule


def _shifted_down(y_true, y_pred):
    return keras.ops.mean(keras.ops.square(y_true - y_pred), axis=-1) - 10.0


@pytest.mark.parametrize("jit_compile", [False, True], ids=["graph", "xla"])
def test_dwa_names_the_term_whose_loss_is_negative(jit_compile):
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(3)(inputs))
    model.compile("sgd", loss=CompositeLoss({"mse": "mse", "shifted": _shifted_down}), jit_compile=jit_compile)
    with pytest.raises(ValueError, match=r"finite, positive term losses .* in epoch 0 'shifted' averaged -"):
        _fit_labels(model, [DynamicWeightAveraging()])


# -- functions of the wrong form, NumPy rewards ------------------------------------------------------

FUNCTION_FORMS = [
    (
        "output penalty given fn(y_true, y_pred)",
        lambda: OutputPenalty(lambda y_true, y_pred: y_pred),
        r"`fn` must be a function of 1 positional argument \(y_pred\)\. Received: <lambda>\(y_true, y_pred\);"
        r" .*use FunctionTerm",
    ),
    (
        "function term given fn(y_pred)",
        lambda: FunctionTerm(lambda y_pred: y_pred),
        r"2 positional arguments.*OutputPenalty",
    ),
    ("function term of three arguments", lambda: FunctionTerm(lambda a, b, c: a), r"Received: <lambda>\(a, b, c\)"),
    ("reward of one argument", lambda: RewardTerm(lambda y_pred: y_pred), r"\(y_true, y_pred\)\. Received"),
    (
        "numpy reward of one argument",
        lambda: RewardTerm(lambda classes: classes, differentiable=False),
        r"\(y_true, classes\)\. Received",
    ),
]


@pytest.mark.parametrize(("case", "build", "message"), FUNCTION_FORMS, ids=[c[0] for c in FUNCTION_FORMS])
def test_functions_of_the_wrong_form_are_refused_at_construction(case, build, message):
    with pytest.raises(TypeError, match=message):
        build()


def test_functions_with_defaults_or_star_arguments_are_accepted():
    assert OutputPenalty(lambda y_pred, scale=2.0: scale * y_pred).fn is not None
    assert FunctionTerm(lambda *tensors: tensors[1]).fn is not None
    assert RewardTerm(lambda y_true, classes, bonus=0.0: classes, differentiable=False).fn is not None


def _numpy_mean(y_true, y_pred):
    return np.mean(np.asarray(y_pred), axis=-1)  # NumPy: no gradient, no values in a compiled step


def _hits(y_true, classes):
    return (classes == y_true.reshape(-1)).astype("float32")


def _nan_rewards(y_true, classes):
    return np.full(classes.shape, np.nan, "float32")


def _reward_model(term, jit_compile=False):
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(3)(inputs))
    model.compile("sgd", loss=CompositeLoss({"ce": FocalLoss(from_logits=True), "gain": term}), jit_compile=jit_compile)
    return model


def test_a_numpy_reward_without_differentiable_false_is_named_eagerly():
    with pytest.raises(
        ValueError, match=r"Reward 'reward' returned a NumPy value, which has no gradient.*differentiable=False"
    ):
        RewardTerm(_numpy_mean)(np.zeros(4, "int64"), np.random.default_rng(0).normal(size=(4, 3)).astype("float32"))


def test_a_numpy_reward_without_differentiable_false_is_named_in_fit():
    model = _reward_model(RewardTerm(_numpy_mean))
    with pytest.raises(ValueError, match=r"Reward 'reward' failed on the symbolic tensors .*differentiable=False"):
        model.fit(np.zeros((4, 3), "float32"), np.arange(4) % 3, verbose=0)


def test_a_numpy_reward_under_xla_is_refused_by_the_callbacks_and_named_by_xla():
    model = _reward_model(RewardTerm(_hits, differentiable=False, from_logits=True), jit_compile=True)
    with pytest.raises(ValueError, match=r"Reward terms \['gain'\] call NumPy .*jit_compile=False"):
        model.fit(np.zeros((4, 3), "float32"), np.arange(4) % 3, verbose=0, callbacks=[DynamicWeightAveraging()])
    import tensorflow as tf

    with pytest.raises(tf.errors.InvalidArgumentError, match="numpy_reward_needs_jit_compile_False"):
        model.fit(np.zeros((4, 3), "float32"), np.arange(4) % 3, verbose=0)


def test_a_nan_reward_is_named_in_fit():
    import tensorflow as tf

    model = _reward_model(RewardTerm(_nan_rewards, differentiable=False, from_logits=True, num_samples=2))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"Reward 'reward' returned 8 non-finite value\(s\) of 8"):
        model.fit(np.zeros((4, 3), "float32"), np.arange(4) % 3, batch_size=4, verbose=0)


# -- loss arithmetic: what it supports, said when something else is tried -----------------------

ARITHMETIC = [
    (
        "weight as text",
        lambda: FocalLoss() * "0.5",
        r"weighted by a number.*Received: '0.5' of type str.*float\('0.5'\)",
    ),
    ("text times a loss", lambda: "0.5" * FocalLoss(), r"Received: '0.5' of type str"),
    ("weight as bool", lambda: FocalLoss() * True, r"Received: True of type bool"),
    ("weight as list", lambda: FocalLoss() * [0.5], r"Received: \[0.5\] of type list"),
    ("subtraction", lambda: FocalLoss() - DiceLoss(), r"cannot be subtracted.*`loss \+ loss`.*RewardTerm"),
    ("subtraction from a number", lambda: 1.0 - DiceLoss(), r"cannot be subtracted.*RewardTerm"),
    ("negation", lambda: -DiceLoss(), r"cannot be negated.*RewardTerm"),
    ("division", lambda: FocalLoss() / 2, r"cannot be divided.*multiply by 1/x"),
    ("composite minus a loss", lambda: (FocalLoss() + DiceLoss()) - DiceLoss(), r"cannot be subtracted"),
]


@pytest.mark.parametrize(("case", "action", "message"), ARITHMETIC, ids=[c[0] for c in ARITHMETIC])
def test_loss_arithmetic_says_what_it_supports(case, action, message):
    with pytest.raises(TypeError, match=message):
        action()


@pytest.mark.parametrize(
    "factor", [0.5, 2, np.float32(0.5), np.int64(2), keras.ops.convert_to_tensor(0.5), np.array(0.5)], ids=repr
)
def test_numbers_of_every_kind_weight_a_loss(factor):
    composite = FocalLoss() * factor
    assert composite.weights_dict() == {"focal": pytest.approx(float(factor))}
    assert (factor * DiceLoss()).weights_dict() == {"dice": pytest.approx(float(factor))}


LAYER_TERMS = [
    ("layer in a dict", lambda: CompositeLoss({"a": keras.layers.Dense(3)}), r"Term 'a' is a Keras layer \(Dense\)"),
    (
        "model in a list",
        lambda: CompositeLoss([FocalLoss(), keras.Sequential([keras.layers.Dense(1)])]),
        r"is a Keras layer \(Sequential\)",
    ),
    ("loss class, not instance", lambda: CompositeLoss({"a": FocalLoss}), r"Term 'a' must be a keras.losses.Loss"),
    (
        "function of one argument",
        lambda: CompositeLoss({"a": lambda y_pred: y_pred}),
        r"`terms\['a'\]` must be a function of 2 positional arguments",
    ),
]


@pytest.mark.parametrize(("case", "build", "message"), LAYER_TERMS, ids=[c[0] for c in LAYER_TERMS])
def test_terms_that_are_not_losses_are_refused_at_construction(case, build, message):
    with pytest.raises((TypeError, ValueError), match=message):
        build()


def test_uncertainty_weights_and_log_variances_reload_in_their_places(tmp_path):
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(3)(inputs))
    loss = FocalLoss(from_logits=True) + 0.5 * DiceLoss(from_logits=True)
    model.compile(keras.optimizers.SGD(0.1), loss=loss)
    x = np.random.default_rng(0).normal(size=(16, 3)).astype("float32")
    model.fit(x, np.arange(16) % 3, epochs=2, verbose=0, callbacks=[UncertaintyWeighting()])
    variances = {t: float(keras.ops.convert_to_numpy(v)) for t, v in loss.state.log_variances.items()}
    model.save(tmp_path / "model.keras")
    restored = keras.models.load_model(tmp_path / "model.keras").loss
    assert restored.weights_dict() == {"focal": 1.0, "dice": 0.5}
    reloaded = {t: float(keras.ops.convert_to_numpy(v)) for t, v in restored.state.log_variances.items()}
    assert reloaded == pytest.approx(variances)
