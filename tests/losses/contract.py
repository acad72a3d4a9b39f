"""The loss contract, as a reusable test class.

A loss test module lists `LossCase`s and subclasses `LossContract`:

    class TestFocalContract(LossContract):
        cases = [LossCase(...), ...]

`tests/conftest.py` parametrizes every test below over `cases`. Expensive checks
(`fit` with `jit_compile=True`, MirroredStrategy, `.keras` save/load) run only for cases
with `full=True`: one or two per loss class.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable

import keras
import numpy as np
import pytest

from tests.backends import jit_compile_setting, tensorflow_only, to_numpy, value_and_gradient
from tests.losses import references as ref

REDUCTIONS = ["sum", "sum_over_batch_size", "mean", "mean_with_sample_weight", "none"]


@dataclasses.dataclass
class LossCase:
    """One configuration of one loss, with its data and its float64 reference.

    Attributes:
        id: test id.
        make_loss: builds the loss; receives keyword overrides such as `reduction`.
        make_data: `rng -> (y_true, y_pred)` NumPy arrays (y_pred float).
        reference: `(y_true, y_pred) -> per-sample float64 values` (zero where masked).
        reference_mask: optional `(y_true, y_pred) -> bool mask` of counted positions.
        from_logits: whether `y_pred` are logits (enables the extreme-logit test).
        activation: output activation of the model used by full tests when not logits.
        full: run the slow contract checks (fit/jit, distribution, save/load).
        rtol: tolerance of value comparisons against the reference.
    """

    id: str
    make_loss: Callable[..., keras.losses.Loss]
    make_data: Callable[[np.random.Generator], tuple[np.ndarray, np.ndarray]]
    reference: Callable[[np.ndarray, np.ndarray], np.ndarray]
    reference_mask: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None
    from_logits: bool = True
    activation: str | None = None
    full: bool = False
    rtol: float = 1e-5
    grad_rtol: float = 2e-3

    def __repr__(self):
        return self.id


def only(predicate):
    """Restricts a contract test to the cases that satisfy `predicate`."""

    def decorate(fn):
        fn.case_filter = predicate
        return fn

    return decorate


def _data(case, seed=0):
    y_true, y_pred = case.make_data(np.random.default_rng(seed))
    return y_true, np.asarray(y_pred, np.float64)


def _mask(case, y_true, y_pred):
    return None if case.reference_mask is None else case.reference_mask(y_true, y_pred)


def _loss_value(loss, y_true, y_pred, sample_weight=None):
    y_pred = keras.ops.convert_to_tensor(np.asarray(y_pred, np.float32))
    return np.asarray(to_numpy(loss(y_true, y_pred, sample_weight=sample_weight)), np.float64)


def _grad(loss, y_true, y_pred):
    return value_and_gradient(lambda x: loss(y_true, x), y_pred)


def _model_for(case, y_true, y_pred):
    """A small model whose output has the shape of `y_pred`, and inputs for it."""
    rng = np.random.default_rng(1)
    n = y_pred.shape[0]
    x = rng.normal(size=(n, 6)).astype("float32")
    out_shape = y_pred.shape[1:]
    inputs = keras.Input((6,))
    h = keras.layers.Dense(int(np.prod(out_shape)), kernel_initializer=keras.initializers.GlorotUniform(seed=2))(inputs)
    h = keras.layers.Reshape(out_shape)(h)
    if case.activation:
        h = keras.layers.Activation(case.activation)(h)
    return keras.Model(inputs, h), x


class LossContract:
    """Checks every keras-lossopt loss must pass. Subclasses set `cases`."""

    cases: list[LossCase] = []

    def test_values_match_float64_reference(self, case):
        y_true, y_pred = _data(case)
        loss = case.make_loss(reduction="none")
        expected = case.reference(y_true, y_pred)
        got = _loss_value(loss, y_true, y_pred)
        mask = _mask(case, y_true, y_pred)
        if mask is not None:
            expected = np.where(mask, expected, 0.0)
        np.testing.assert_allclose(got, expected, rtol=case.rtol, atol=1e-6)

    @pytest.mark.parametrize("reduction", REDUCTIONS)
    @pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "sample_weight"])
    def test_reductions_and_sample_weight(self, case, reduction, weighted):
        y_true, y_pred = _data(case)
        sample_weight = np.random.default_rng(5).uniform(0.1, 2.0, size=y_pred.shape[0]) if weighted else None
        loss = case.make_loss(reduction=reduction)
        expected = ref.reduce(case.reference(y_true, y_pred), sample_weight, _mask(case, y_true, y_pred), reduction)
        got = _loss_value(loss, y_true, y_pred, sample_weight)
        np.testing.assert_allclose(got, expected, rtol=case.rtol, atol=1e-6)

    def test_gradients_match_float64_reference(self, case):
        y_true, y_pred = _data(case)
        loss = case.make_loss(reduction="sum")
        mask = _mask(case, y_true, y_pred)

        def total(p):
            values = case.reference(y_true, p)
            return float(np.sum(values if mask is None else np.where(mask, values, 0.0)))

        expected = ref.numerical_gradient(total, y_pred)
        _, got = _grad(loss, y_true, y_pred)
        scale = max(np.abs(expected).max(), 1e-3)
        np.testing.assert_allclose(np.asarray(got), expected, rtol=case.grad_rtol, atol=case.grad_rtol * scale)

    @only(lambda c: c.from_logits)
    @pytest.mark.parametrize("magnitude", [30.0, 100.0])
    def test_extreme_logits_are_finite(self, case, magnitude):
        y_true, y_pred = _data(case)
        extreme = np.sign(y_pred) * magnitude
        extreme[extreme == 0] = magnitude
        for reduction in ("none", "sum"):
            value, grad = _grad(case.make_loss(reduction=reduction), y_true, extreme)
            assert np.all(np.isfinite(np.asarray(value))), f"non-finite loss at logits +-{magnitude}"
            assert np.all(np.isfinite(np.asarray(grad))), f"non-finite gradient at logits +-{magnitude}"

    @pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
    def test_mixed_precision_computes_in_float32(self, case, policy):
        y_true, y_pred = _data(case)
        low = "float16" if policy == "mixed_float16" else "bfloat16"
        low_pred = keras.ops.cast(keras.ops.convert_to_tensor(y_pred, "float32"), low)
        rounded = to_numpy(keras.ops.cast(low_pred, "float32")).astype(np.float64)
        keras.config.set_dtype_policy(policy)
        try:
            loss = case.make_loss()
            assert loss.dtype == "float32"
            got = float(to_numpy(loss(y_true, low_pred)))
        finally:
            keras.config.set_dtype_policy("float32")
        expected = ref.reduce(case.reference(y_true, rounded), None, _mask(case, y_true, rounded))
        np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-6)

    def test_config_round_trip_keeps_values(self, case):
        y_true, y_pred = _data(case)
        loss = case.make_loss()
        config = json.loads(json.dumps(loss.get_config()))
        rebuilt = type(loss).from_config(config)
        assert rebuilt.get_config() == loss.get_config()
        serialized = json.loads(json.dumps(keras.saving.serialize_keras_object(loss)))
        restored = keras.saving.deserialize_keras_object(serialized)
        assert type(restored) is type(loss)
        np.testing.assert_allclose(_loss_value(rebuilt, y_true, y_pred), _loss_value(loss, y_true, y_pred), rtol=1e-6)
        np.testing.assert_allclose(_loss_value(restored, y_true, y_pred), _loss_value(loss, y_true, y_pred), rtol=1e-6)

    def test_mismatched_shapes_name_both(self, case):
        y_true, y_pred = _data(case)
        bad_pred = np.concatenate([y_pred, y_pred[..., :1]], axis=-1) if y_pred.shape[-1] > 1 else y_pred[:, None]
        if (
            np.asarray(y_true).shape[: bad_pred.ndim - 1] == bad_pred.shape[:-1]
            and np.asarray(y_true).ndim < bad_pred.ndim
        ):
            bad_pred = bad_pred[:-1]  # sparse targets: break the batch axis instead
        with pytest.raises(ValueError, match=r"y_true\.shape.*y_pred\.shape|y_pred\.shape.*y_true\.shape"):
            case.make_loss()(y_true, bad_pred.astype("float32"))

    @only(lambda c: c.full)
    def test_fit_with_jit_compile_matches_eager_loss(self, case):
        y_true, y_pred = _data(case)
        model, x = _model_for(case, y_true, y_pred)
        loss = case.make_loss()
        model.compile(optimizer=keras.optimizers.SGD(0.01), loss=loss, jit_compile=jit_compile_setting())
        history = model.fit(x, y_true, epochs=2, batch_size=len(x), verbose=0)
        assert all(np.isfinite(history.history["loss"]))
        evaluated = model.evaluate(x, y_true, batch_size=len(x), verbose=0)
        eager = float(to_numpy(loss(y_true, model(x))))
        np.testing.assert_allclose(evaluated, eager, rtol=1e-4)

    @only(lambda c: c.full)
    @tensorflow_only
    def test_mirrored_strategy_gives_the_same_loss(self, case, two_device_strategy):
        y_true, y_pred = _data(case)
        model, x = _model_for(case, y_true, y_pred)
        weights = model.get_weights()
        model.compile(loss=case.make_loss())
        single = model.evaluate(x, y_true, batch_size=len(x), verbose=0)
        with two_device_strategy.scope():
            replicated, _ = _model_for(case, y_true, y_pred)
            replicated.set_weights(weights)
            replicated.compile(loss=case.make_loss())
        distributed = replicated.evaluate(x, y_true, batch_size=len(x), verbose=0)
        np.testing.assert_allclose(distributed, single, rtol=1e-5)

    @only(lambda c: c.full)
    def test_model_save_and_load_without_custom_objects(self, case, tmp_path):
        y_true, y_pred = _data(case)
        model, x = _model_for(case, y_true, y_pred)
        model.compile(optimizer="adam", loss=case.make_loss())
        before = model.evaluate(x, y_true, verbose=0)
        path = tmp_path / "model.keras"
        model.save(path)
        loaded = keras.models.load_model(path)
        assert type(loaded.loss) is type(model.loss)
        assert loaded.loss.get_config() == model.loss.get_config()
        np.testing.assert_allclose(loaded.evaluate(x, y_true, verbose=0), before, rtol=1e-6)
