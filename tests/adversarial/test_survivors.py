"""The survivors loop, and the compiled rounds that every attack of the same structure shares."""

import logging

import keras
import numpy as np

from keras_lossopt.adversarial import AutoProjectedGradientDescent, SquareAttack, evaluate_robustness
from keras_lossopt.adversarial.survivors import _SHARED_ROUNDS, attack_survivors
from tests.backends import BACKEND, tensorflow_only, to_numpy


def test_the_loop_attacks_only_the_samples_standing_and_carries_their_state():
    x = np.arange(6, dtype="float32").reshape(6, 1)
    seen = []

    def run(index, argument, state):
        seen.append(index.tolist())
        (count,) = state
        fooled = x[index, 0] % argument == 0  # round 2 fools the even samples, round 3 the multiples of 3
        return x[index] + 10 * argument, fooled, (count + 1,)

    x_adv, standing, history = attack_survivors(x, [True] * 5 + [False], [2, 3, 5], run, (np.zeros(6),))
    assert seen == [[0, 1, 2, 3, 4], [1, 3], [1]]  # sample 5 misclassified from the start: never attacked
    assert standing.tolist() == [False, True, False, False, False, False]
    after_two, after_three = [False, True, False, True, False, False], [False, True, False, False, False, False]
    assert [h.tolist() for h in history] == [after_two, after_three, standing.tolist()]
    np.testing.assert_array_equal(x_adv[:, 0], [20, 51, 22, 33, 24, 5])  # the last round that ran on each sample


def test_the_loop_stops_when_nothing_stands():
    calls = []
    x_adv, standing, history = attack_survivors(
        np.ones((3, 2)),
        [True, True, True],
        [1, 2],
        lambda i, a, s: (calls.append(a), np.zeros((len(i), 2)), [True] * len(i), s)[1:],
    )
    assert calls == [1] and not standing.any() and len(history) == 1 and not x_adv.any()


def _model(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(5)])


def _shared_traces(model):
    """TensorFlow's tracing count of each shared round function (None elsewhere: jax.jit compiles per shape)."""
    if BACKEND != "tensorflow":
        return None
    return [function.experimental_get_tracing_count() for function, _ in _SHARED_ROUNDS.get(model, {}).values()]


def test_attacks_of_one_structure_share_one_trace_and_keep_their_own_random_stream(rng):
    model = _model()
    x = rng.uniform(size=(16, 6)).astype("float32")
    y = np.argmax(to_numpy(model(x)), axis=-1)
    first = AutoProjectedGradientDescent(0.1, steps=10, seed=3)(model, x, y)
    again = AutoProjectedGradientDescent(0.1, steps=10, seed=3)(model, x, y)  # a new object, same seed
    np.testing.assert_array_equal(first, again)  # the shared trace drew from the new object's stream
    other_budget = AutoProjectedGradientDescent(0.3, steps=25, seed=3)(model, x, y)
    assert np.abs(other_budget - x).max() <= 0.3 + 1e-6 and np.abs(other_budget - x).max() > 0.1
    assert _shared_traces(model) in ([1], None)  # eps and steps are tensors of the one trace
    assert len(_SHARED_ROUNDS[model]) == 1
    square = SquareAttack(0.1, queries=20, seed=1)
    square(model, x, y)
    SquareAttack(0.2, queries=20, seed=1)(model, x, y)
    assert _shared_traces(model) in ([1, 1], None)
    assert len(_SHARED_ROUNDS[model]) == 2


@tensorflow_only  # TensorFlow's tracing count and its "retracing" warning
def test_a_standard_evaluation_logs_no_retracing_warning_and_traces_once(rng):
    import tensorflow as tf

    model = _model(1)
    x = rng.uniform(size=(40, 6)).astype("float32")
    y = np.argmax(to_numpy(model(x)), axis=-1)
    messages = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    tf.get_logger().addHandler(handler)
    try:
        results = [
            evaluate_robustness(model, (x, y), eps=0.05, strength="standard", batch_size=16, sanity_samples=20)
            for _ in range(2)
        ]
    finally:
        tf.get_logger().removeHandler(handler)
    assert not [m for m in messages if "retracing" in m], messages
    # APGD-CE (and the sanity checks' APGD-CE at every budget and length), APGD-T, Square: one trace each.
    assert sorted(_shared_traces(model)) == [1, 1, 1]
    assert all(0.0 <= result["robust_accuracy"] <= result["clean_accuracy"] == 1.0 for result in results)


def test_the_seed_state_of_a_keras_seed_generator_can_be_handed_over():
    """The sharing copies `SeedGenerator.state` between generators; this fails if Keras changes that."""
    source, target = keras.random.SeedGenerator(7), keras.random.SeedGenerator(0)
    keras.random.uniform((3,), seed=source)
    target.state.assign(source.state.value)
    np.testing.assert_array_equal(
        to_numpy(keras.random.uniform((3,), seed=target)), to_numpy(keras.random.uniform((3,), seed=source))
    )


def test_the_shared_rounds_do_not_keep_models_alive(rng):
    import gc
    import weakref

    model = _model(2)
    x = rng.uniform(size=(8, 6)).astype("float32")
    SquareAttack(0.1, queries=5, seed=0)(model, x, np.argmax(to_numpy(model(x)), axis=-1))
    ((function, _),) = _SHARED_ROUNDS[model].values()
    refs = weakref.ref(model), weakref.ref(function)
    del model, function
    gc.collect()
    assert [ref() for ref in refs] == [None, None]  # the model, and with it its compiled rounds
