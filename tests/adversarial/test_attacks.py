import copy
import json

import keras
import numpy as np
import pytest
from keras import ops

from keras_lossopt.adversarial import (
    FastGradientMethod,
    MomentumIterativeMethod,
    NotDifferentiableError,
    ProjectedGradientDescent,
)
from keras_lossopt.adversarial.base import _SHARED_GENERATE
from keras_lossopt.adversarial.objectives import class_scores, margin_from_scores
from keras_lossopt.losses import FocalLoss
from tests.adversarial.conftest import accuracy, dense_classifier
from tests.backends import BACKEND, to_numpy, value_and_gradient

EPS = 0.1


def textbook_fgsm(model, loss, x, y, eps, clip=(0.0, 1.0), targeted=False):
    """x + eps * sign(grad), with the gradient taken by the backend's own autodiff directly."""
    _, grad = value_and_gradient(lambda t: loss(y, model(t, training=False)), x)
    direction = -np.sign(grad) if targeted else np.sign(grad)
    x_adv = np.asarray(x) + eps * direction
    return (np.clip(x_adv, *clip) if clip else x_adv), grad


def numpy_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


# --------------------------------------------------------------------- FGSM guarantees
def test_fgsm_equals_textbook_formula_with_compiled_loss(trained, digits):
    _, _, x, y = digits
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    expected, _ = textbook_fgsm(trained, loss, x, y, EPS)
    np.testing.assert_array_equal(FastGradientMethod(EPS)(trained, x, y), expected)


def test_targeted_fgsm_equals_textbook_formula(trained, digits):
    _, _, x, y = digits
    target = (y + 1) % 10
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    expected, _ = textbook_fgsm(trained, loss, x, target, EPS, targeted=True)
    np.testing.assert_array_equal(FastGradientMethod(EPS, targeted=True)(trained, x, target), expected)


def test_fgsm_on_a_linear_model_matches_a_float64_numpy_gradient(rng):
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4)])
    w, b = (v.astype("float64") for v in model.get_weights())
    x = rng.uniform(0.2, 0.8, size=(32, 6)).astype("float32")
    y = rng.integers(0, 4, size=32)
    # d CE / d x = (softmax(xW + b) - onehot(y)) W^T
    grad = (numpy_softmax(x.astype("float64") @ w + b) - np.eye(4)[y]) @ w.T
    expected = np.clip(x + EPS * np.sign(grad), 0.0, 1.0)
    x_adv = FastGradientMethod(EPS, loss="cross_entropy")(model, x, y)
    clear = np.abs(grad) > 1e-6  # signs of near-zero float32 gradients are not meaningful
    np.testing.assert_allclose(x_adv[clear], expected[clear], atol=1e-6)


def test_margin_loss_step_on_a_linear_model_matches_numpy(rng):
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4)])
    w, b = (v.astype("float64") for v in model.get_weights())
    x = rng.uniform(0.2, 0.8, size=(16, 6)).astype("float32")
    y = rng.integers(0, 4, size=16)
    logits = x.astype("float64") @ w + b
    other = np.where(np.eye(4)[y] > 0, -np.inf, logits).argmax(axis=1)
    grad = (w[:, other] - w[:, y]).T  # d (z_j* - z_y) / d x
    expected = x + 0.05 * np.sign(grad)
    attack = ProjectedGradientDescent(0.05, steps=1, step_size=0.05, random_start=False, loss="margin", clip=None)
    np.testing.assert_allclose(attack(model, x, y), expected, atol=1e-6)
    scores = class_scores(ops.convert_to_tensor(logits, "float32"), True)
    np.testing.assert_allclose(
        to_numpy(margin_from_scores(ops.convert_to_tensor(y, "int32"), scores)),
        logits[np.arange(16), other] - logits[np.arange(16), y],
        rtol=1e-5, atol=1e-5,
    )  # fmt: skip


def test_fgsm_linf_moves_every_coordinate_exactly_eps_except_where_clipped(trained, digits):
    _, _, x, y = digits
    x_adv = FastGradientMethod(EPS)(trained, x, y)
    _, grad = textbook_fgsm(trained, keras.losses.SparseCategoricalCrossentropy(from_logits=True), x, y, EPS)
    moved = np.abs(x_adv - x)
    free = (grad != 0) & (x + EPS * np.sign(grad) >= 0) & (x + EPS * np.sign(grad) <= 1)
    assert free.sum() > 1000
    np.testing.assert_allclose(moved[free], EPS, atol=1e-6)
    assert np.all(moved <= EPS + 1e-6)
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0


def test_fgsm_l2_is_exactly_eps_away_in_l2_without_clipping(trained, digits):
    _, _, x, y = digits
    x_adv = FastGradientMethod(1.5, norm="l2", clip=None)(trained, x, y)
    np.testing.assert_allclose(np.linalg.norm((x_adv - x).astype("float64"), axis=1), 1.5, rtol=1e-5)


# --------------------------------------------------------------------- PGD and MI-FGSM
@pytest.mark.parametrize(
    "attack",
    [
        ProjectedGradientDescent(0.2, steps=6, restarts=2, seed=1),
        ProjectedGradientDescent(1.0, norm="l2", steps=6, step_size=0.5, seed=2),
        ProjectedGradientDescent(0.2, steps=5, loss="margin", clip=(0.1, 0.9), seed=3),
        MomentumIterativeMethod(0.2, steps=5, step_size=0.08),
        MomentumIterativeMethod(1.0, norm="l2", steps=4, step_size=0.5),
    ],
    ids=["pgd-linf-restarts", "pgd-l2", "pgd-margin-clip", "mifgsm-linf", "mifgsm-l2"],
)
def test_every_iterate_stays_in_the_eps_ball_and_the_clip_range(trained, digits, attack):
    _, _, x, y = digits
    x = np.clip(x, *attack.clip)
    path = attack.trajectory(trained, x, y)
    assert path.shape == (attack.restarts, attack.steps + 1, *x.shape)
    delta = (path - x).reshape(attack.restarts, attack.steps + 1, len(x), -1).astype("float64")
    if attack.norm == "linf":
        assert np.abs(delta).max() <= attack.eps + 1e-6
    else:
        assert np.linalg.norm(delta, axis=-1).max() <= attack.eps * (1 + 1e-5)
    assert path.min() >= attack.clip[0] and path.max() <= attack.clip[1]
    # The iterates move: it is an ascent, not a copy of the start.
    assert np.abs(path[:, -1] - path[:, 0]).max() > 0.5 * attack.effective_step_size


def test_pgd_is_stronger_than_fgsm_and_raises_the_loss(trained, digits):
    _, _, x, y = digits
    clean = accuracy(trained, x, y)
    fgsm = accuracy(trained, FastGradientMethod(EPS)(trained, x, y), y)
    pgd_x = ProjectedGradientDescent(EPS, steps=10, seed=0)(trained, x, y)
    pgd = accuracy(trained, pgd_x, y)
    assert clean > 0.85
    assert pgd <= fgsm < clean
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    assert float(loss(y, trained(pgd_x))) > 2 * float(loss(y, trained(x)))


def test_restarts_keep_the_strongest_final_iterate_per_sample(trained, digits):
    _, _, x, y = digits
    kwargs = dict(eps=0.08, steps=3, restarts=3, loss="cross_entropy", seed=11)
    finals = ProjectedGradientDescent(**kwargs).trajectory(trained, x, y)[:, -1]
    chosen = ProjectedGradientDescent(**kwargs)(trained, x, y)
    logits = np.stack([to_numpy(trained(f)) for f in finals])  # (restarts, N, 10)
    fooled = logits.argmax(-1) != y
    ce = -np.take_along_axis(
        logits - np.log(np.exp(logits).sum(-1, keepdims=True)), np.broadcast_to(y[None, :, None], (3, len(y), 1)), -1
    )[..., 0]
    key = fooled * 1e6 + ce  # a fooling example first, then the highest loss
    best = key.argmax(axis=0)
    np.testing.assert_allclose(chosen, finals[best, np.arange(len(y))], atol=1e-6)
    assert len(set(best.tolist())) > 1  # different restarts win for different samples


@pytest.mark.parametrize(
    "make",
    [
        lambda: FastGradientMethod(0.2, targeted=True),
        lambda: ProjectedGradientDescent(0.2, steps=10, targeted=True, seed=0),
        lambda: ProjectedGradientDescent(0.2, steps=10, targeted=True, loss="margin", seed=0),
        lambda: MomentumIterativeMethod(0.2, steps=10, targeted=True),
    ],
    ids=["fgsm", "pgd", "pgd-margin", "mifgsm"],
)
def test_targeted_attack_raises_the_target_probability(trained_probs, digits, make):
    _, _, x, y = digits
    target = (y + 3) % 10
    rows = np.arange(len(y))
    before = to_numpy(trained_probs(x))[rows, target]
    after = to_numpy(trained_probs(make()(trained_probs, x, target)))[rows, target]
    assert np.mean(after > before) > 0.95
    assert after.mean() > before.mean() + 0.05


@pytest.mark.parametrize("cls", [FastGradientMethod, ProjectedGradientDescent, MomentumIterativeMethod])
def test_eps_zero_returns_the_input_unchanged(trained, digits, cls):
    _, _, x, y = digits
    x64 = x.astype("float64") + 1e-12  # values float32 cannot hold
    out = cls(eps=0.0)(trained, x64, y)
    assert out.dtype == np.float64 and out is not x64
    np.testing.assert_array_equal(out, x64)
    tensor = ops.convert_to_tensor(x)
    np.testing.assert_array_equal(to_numpy(cls(eps=0.0)(trained, tensor, y)), x)


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
def test_inputs_are_never_modified_and_shape_dtype_are_kept(trained, digits, dtype):
    _, _, x, y = digits
    x = x.astype(dtype)
    original = x.copy()
    for attack in (FastGradientMethod(EPS), ProjectedGradientDescent(EPS, steps=3), MomentumIterativeMethod(EPS)):
        out = attack(trained, x, y)
        assert out.shape == x.shape and out.dtype == x.dtype
        np.testing.assert_array_equal(x, original)
        assert not np.shares_memory(out, x)


def test_logits_and_probability_models_get_the_same_fgsm(trained, trained_probs, digits):
    _, _, x, y = digits
    on_logits = FastGradientMethod(EPS, loss="cross_entropy")(trained, x, y)
    on_probs = FastGradientMethod(EPS)(trained_probs, x, y)  # auto-detected: Softmax layer
    explicit = FastGradientMethod(EPS, from_logits=False)(trained_probs, x, y)
    np.testing.assert_array_equal(on_probs, explicit)
    assert np.mean(on_logits == on_probs) > 0.99


def test_auto_detection_inside_the_graph_for_subclassed_models(trained, digits):
    class Probabilities(keras.Model):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def call(self, x, training=False):
            return keras.ops.softmax(self.inner(x, training=training))

    _, _, x, y = digits
    wrapped = Probabilities(trained)
    np.testing.assert_array_equal(
        FastGradientMethod(EPS)(wrapped, x, y), FastGradientMethod(EPS, from_logits=False)(wrapped, x, y)
    )
    assert not np.array_equal(
        FastGradientMethod(EPS, loss="margin")(wrapped, x, y),
        FastGradientMethod(EPS, loss="margin", from_logits=True)(wrapped, x, y),
    )


def test_any_keras_loss_and_library_losses_can_be_attacked(trained, digits):
    _, _, x, y = digits
    focal = FocalLoss(gamma=2.0, from_logits=True)
    expected, _ = textbook_fgsm(trained, focal, x, y, EPS)
    np.testing.assert_array_equal(FastGradientMethod(EPS, loss=focal)(trained, x, y), expected)
    by_name = FastGradientMethod(EPS, loss="focal")(dense_classifier(activation="softmax"), x, y)
    assert by_name.shape == x.shape
    one_hot = np.eye(10, dtype="float32")[y]
    cce = keras.losses.CategoricalCrossentropy(from_logits=True)
    np.testing.assert_array_equal(
        FastGradientMethod(EPS, loss=cce)(trained, x, one_hot), FastGradientMethod(EPS)(trained, x, y)
    )


def test_binary_sigmoid_model(rng):
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(1, activation="sigmoid")])
    x = rng.uniform(0.2, 0.8, size=(20, 5)).astype("float32")
    y = rng.integers(0, 2, size=(20, 1)).astype("float32")
    expected, _ = textbook_fgsm(model, keras.losses.BinaryCrossentropy(), x, y, EPS)
    np.testing.assert_allclose(FastGradientMethod(EPS, loss="cross_entropy")(model, x, y), expected, atol=1e-7)


# --------------------------------------------------------------------- compilation
@pytest.mark.skipif(BACKEND == "torch", reason="PyTorch runs the attacks eagerly: nothing is traced")
def test_one_traced_function_per_model_reused_across_calls_and_attack_objects(trained, digits, monkeypatch):
    _, _, x, y = digits
    traces = []
    generate = ProjectedGradientDescent.generate

    def counted(self, *args, **kwargs):
        traces.append(1)  # Python runs the body once per trace (tf.function and jax.jit alike)
        return generate(self, *args, **kwargs)

    monkeypatch.setattr(ProjectedGradientDescent, "generate", counted)
    attack = ProjectedGradientDescent(EPS, steps=4, seed=12)
    before = set(_SHARED_GENERATE.get(trained, {}))
    for _ in range(3):
        attack(trained, x, y)
    ProjectedGradientDescent(EPS, steps=4, seed=12)(trained, x, y)  # a new object, same settings
    (key,) = set(_SHARED_GENERATE[trained]) - before
    assert len(traces) == 1
    attack(trained, x[:50], y[:50])
    ProjectedGradientDescent(EPS, steps=4, seed=12)(trained, x[:70], y[:70])
    # TensorFlow: one shape-generic retrace at most; jax.jit compiles once per batch size.
    assert len(traces) <= (2 if BACKEND == "tensorflow" else 3)
    other = dense_classifier()
    attack(other, x, y)
    assert key in _SHARED_GENERATE[other]


# --------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: FastGradientMethod(eps=-0.1), r"`eps` must be >= 0. Received: eps=-0.1"),
        (lambda: ProjectedGradientDescent(step_size=0.0), r"`step_size` must be > 0. Received: step_size=0"),
        (lambda: MomentumIterativeMethod(step_size=-1), r"`step_size` must be > 0. Received: step_size=-1"),
        (lambda: ProjectedGradientDescent(norm="l3"), r"`norm` must be one of \['linf', 'l2'\]. Received: norm='l3'"),
        (lambda: FastGradientMethod(norm=1), r"Received: norm=1"),
        (lambda: ProjectedGradientDescent(steps=0), r"`steps` must be >= 1. Received: steps=0"),
        (lambda: ProjectedGradientDescent(restarts=0), r"`restarts` must be >= 1"),
        (lambda: ProjectedGradientDescent(loss="margn"), r"Unknown loss 'margn'"),
        (lambda: FastGradientMethod(clip=(1, 0)), r"`clip` must satisfy low < high"),
        (lambda: MomentumIterativeMethod(decay=-1), r"`decay` must be >= 0"),
        (lambda: FastGradientMethod(from_logits="yes"), r"`from_logits` must be None"),
    ],
)
def test_bad_arguments_fail_at_construction(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_norm_aliases():
    assert FastGradientMethod(norm=np.inf).norm == "linf"
    assert FastGradientMethod(norm=2).norm == "l2"
    assert FastGradientMethod(norm="Linf").norm == "linf"


@pytest.mark.parametrize(
    "blocker, layer_type",
    [
        (keras.layers.Lambda(lambda t: keras.ops.one_hot(keras.ops.argmax(t, axis=-1), 10), name="argmax"), "Lambda"),
        (keras.layers.Lambda(lambda t: keras.ops.cast(t * 100, "int32"), name="to_int"), "Lambda"),
        (keras.layers.Lambda(lambda t: keras.ops.stop_gradient(t), name="frozen"), "Lambda"),
        (keras.layers.Lambda(lambda t: keras.ops.round(t), name="rounding"), "Lambda"),
        (keras.layers.Lambda(lambda t: keras.ops.sign(t), name="signs"), "Lambda"),  # zero, not None
    ],
    ids=["argmax", "integer-cast", "stop-gradient", "round", "sign"],
)
def test_non_differentiable_models_get_an_error_naming_the_layer(digits, blocker, layer_type):
    _, _, x, y = digits
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(10, name="dense"), blocker])
    with pytest.raises(NotDifferentiableError, match=rf"First layer that blocks it: '{blocker.name}' \({layer_type}"):
        FastGradientMethod(EPS)(model, x, y)


def test_dead_units_warn_instead_of_failing(digits):
    _, _, x, y = digits
    model = dense_classifier()
    weights = model.get_weights()
    weights[1] = np.full_like(weights[1], -100.0)  # every ReLU of the hidden layer is off
    model.set_weights(weights)
    with pytest.warns(UserWarning, match=r"all-zero gradient.*'dense"):
        out = FastGradientMethod(EPS)(model, x, y)
    np.testing.assert_array_equal(out, x)


@pytest.mark.filterwarnings("ignore:The output of model")
def test_saturated_softmax_is_not_mistaken_for_a_broken_model(rng):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    w, b = model.get_weights()
    model.set_weights([w * 0 + np.array([[500.0, 0.0, 0.0]] * 4, "float32"), b])
    x = rng.uniform(0.5, 1.0, size=(8, 4)).astype("float32")
    out = FastGradientMethod(EPS)(model, x, np.zeros(8, int))  # exact zero loss gradient, no error
    assert out.shape == x.shape


# --------------------------------------------------------------------- serialization
@pytest.mark.parametrize(
    "attack",
    [
        FastGradientMethod(
            0.25, norm="l2", targeted=True, clip=None, loss="margin", from_logits=True,
            random_start=True, step_size=0.3, seed=4, name="fg",
        ),
        ProjectedGradientDescent(
            0.2, norm="l2", steps=7, step_size=0.05, random_start=False, restarts=3, targeted=True,
            clip=(-1.0, 1.0), loss=FocalLoss(gamma=1.5, from_logits=True), from_logits=False, seed=5,
        ),
        MomentumIterativeMethod(
            0.2, norm="l2", steps=4, step_size=0.06, decay=0.5, targeted=True, clip=(0, 2),
            loss="cross_entropy", from_logits=True, seed=9, name="mi",
        ),
    ],
    ids=["fgsm", "pgd", "mifgsm"],
)  # fmt: skip
def test_config_round_trip_with_non_default_values(attack):
    config = json.loads(json.dumps(keras.saving.serialize_keras_object(attack)))
    restored = keras.saving.deserialize_keras_object(config)
    assert type(restored) is type(attack)
    assert restored.get_config() == attack.get_config()
    copied = copy.deepcopy(attack)
    assert copied.get_config() == attack.get_config()
    assert copied.random_generators()[0] is not attack.random_generators()[0]  # a copy starts its own stream
    defaults = type(attack)()
    differing = [k for k, v in attack.get_config().items() if defaults.get_config()[k] != v]
    assert len(differing) >= len(attack.get_config()) - 2  # nearly every argument is non-default


def test_restored_attack_gives_the_same_examples(trained, digits):
    _, _, x, y = digits
    attack = ProjectedGradientDescent(EPS, steps=5, loss="margin", random_start=False)
    restored = ProjectedGradientDescent.from_config(json.loads(json.dumps(attack.get_config())))
    np.testing.assert_array_equal(restored(trained, x, y), attack(trained, x, y))


def test_the_cache_does_not_keep_models_alive(digits):
    import gc
    import weakref

    _, _, x, y = digits
    attack = ProjectedGradientDescent(EPS, steps=2)
    model = dense_classifier()
    attack(model, x, y)
    ((function, _),) = _SHARED_GENERATE[model].values()
    refs = weakref.ref(model), weakref.ref(function)
    del model, function
    gc.collect()
    assert [ref() for ref in refs] == [None, None]  # the model, and with it its compiled function
