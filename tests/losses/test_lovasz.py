import itertools
import json

import numpy as np
import pytest

from keras_lossopt.losses import LovaszHingeLoss, LovaszSoftmaxLoss, get
from keras_lossopt.losses.lovasz import lovasz_extension, lovasz_gradient
from tests.backends import compiled, tensorflow_only, value_and_gradient
from tests.losses import overlap_references as oref
from tests.losses.contract import LossCase, LossContract

N, C = 4, 3


def sparse_logits_with_ignored(rng):
    labels = rng.integers(0, C, size=(N, 4, 4))
    labels[0, 0] = 255
    labels[2, 1, 1] = 255
    return labels, rng.normal(scale=2.0, size=(N, 4, 4, C))


def onehot_probs_missing_class(rng):
    labels = rng.integers(0, 2, size=(N, 4, 4))  # class 2 never present
    return np.eye(C)[labels].astype("float32"), rng.dirichlet(np.ones(C), size=(N, 4, 4))


def binary_scores(rng):
    return rng.integers(0, 2, size=(N, 4, 4, 1)).astype("float32"), rng.normal(scale=1.5, size=(N, 4, 4, 1))


def binary_scores_with_void(rng):
    y, s = binary_scores(rng)
    y[1, :2] = 255.0
    return y[..., 0], s[..., 0]


PER_IMAGE_CASES = [
    LossCase(
        "softmax-per-image-ignore",
        lambda **kw: LovaszSoftmaxLoss(from_logits=True, per_image=True, ignore_index=255, **kw),
        sparse_logits_with_ignored,
        lambda y, p: oref.lovasz_softmax(y, p, from_logits=True, ignore_index=255, per_image=True),
        full=True,
    ),
    LossCase(
        "softmax-per-image-all-classes-probs",
        lambda **kw: LovaszSoftmaxLoss(per_image=True, classes="all", **kw),
        onehot_probs_missing_class,
        lambda y, p: oref.lovasz_softmax(y, p, per_image=True, classes="all"),
        from_logits=False,
        activation="softmax",
    ),
    LossCase(
        "hinge-per-image",
        lambda **kw: LovaszHingeLoss(**kw),
        binary_scores,
        lambda y, p: oref.lovasz_hinge(y, p),
        full=True,
    ),
    LossCase(
        "hinge-per-image-void-rank3",
        lambda **kw: LovaszHingeLoss(ignore_index=255, **kw),
        binary_scores_with_void,
        lambda y, p: oref.lovasz_hinge(y, p, ignore_index=255),
    ),
]


class TestPerImageLovaszContract(oref.CompactLossContract):
    cases = PER_IMAGE_CASES


BATCH_CASES = [
    LossCase(
        "softmax-batch-ignore",
        lambda **kw: LovaszSoftmaxLoss(from_logits=True, ignore_index=255, **kw),
        sparse_logits_with_ignored,
        lambda y, p, sample_weight=None: oref.lovasz_softmax(y, p, from_logits=True, ignore_index=255),
        full=False,
    ),
    LossCase(
        "hinge-batch",
        lambda **kw: LovaszHingeLoss(per_image=False, **kw),
        binary_scores,
        lambda y, p, sample_weight=None: oref.lovasz_hinge(y, p, per_image=False),
    ),
]


class TestBatchLovaszContract(oref.BatchRegionContract):
    cases = BATCH_CASES
    takes_sample_weight = False


def test_lovasz_extension_equals_jaccard_loss_on_binary_error_vectors(rng):
    # Berman et al. 2018: the Lovasz extension is tight, it equals the set function on {0,1}^p.
    targets = np.array([1, 1, 0, 1, 0, 0], np.float32)
    for bits in itertools.product([0.0, 1.0], repeat=targets.size):
        errors = np.array(bits, np.float32)
        got = float(lovasz_extension(errors[None], targets[None])[0])
        expected = oref.jaccard_set_loss(targets, errors > 0)
        assert got == pytest.approx(expected, abs=1e-6)


def test_lovasz_gradient_matches_reference_increments(rng):
    targets = rng.integers(0, 2, size=20).astype(np.float32)
    got = np.asarray(lovasz_gradient(targets[None]))[0]
    expected, previous = [], 0.0
    for k in range(1, 21):
        current = oref.jaccard_set_loss(targets, np.arange(20) < k)
        expected.append(current - previous)
        previous = current
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_perfect_hinge_prediction_with_margin_is_zero(rng):
    labels = rng.integers(0, 2, size=(4, 6, 6)).astype("float32")
    scores = (2 * labels - 1) * rng.uniform(1.0, 5.0, size=labels.shape)
    for per_image in (True, False):
        assert float(LovaszHingeLoss(per_image=per_image)(labels, scores)) == 0.0
    # Inside the margin the loss is positive.
    assert float(LovaszHingeLoss()(labels, 0.5 * (2 * labels - 1))) > 0


def test_perfect_softmax_prediction_is_zero_and_empty_image_defined(rng):
    labels = rng.integers(0, C, size=(2, 4, 4))
    assert float(LovaszSoftmaxLoss()(labels, np.eye(C)[labels])) == 0.0
    everything_ignored = np.full((2, 4, 4), 255)
    value = LovaszSoftmaxLoss(per_image=True, ignore_index=255)(everything_ignored, np.full((2, 4, 4, C), 1 / C))
    assert float(value) == 0.0


@pytest.mark.parametrize("loss_class", [LovaszSoftmaxLoss, LovaszHingeLoss])
def test_ignored_pixels_change_neither_loss_nor_gradient(rng, loss_class):
    if loss_class is LovaszSoftmaxLoss:
        labels, logits = sparse_logits_with_ignored(rng)
        loss = LovaszSoftmaxLoss(from_logits=True, ignore_index=255)
        ignored = labels == 255
    else:
        labels, logits = binary_scores_with_void(rng)
        loss = LovaszHingeLoss(ignore_index=255)
        ignored = labels == 255
    other = logits.copy()
    other[ignored] += rng.normal(scale=10.0, size=other[ignored].shape)
    values, grads = [], []
    for z in (logits, other):
        value, grad = value_and_gradient(lambda var: loss(labels, var), z)
        values.append(float(value))
        grads.append(grad)
        assert np.all(grads[-1][ignored] == 0.0)
    assert values[0] == pytest.approx(values[1], rel=1e-6)
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-5, atol=1e-8)


def test_compiles_with_xla(rng):
    labels, logits = sparse_logits_with_ignored(rng)
    loss = LovaszSoftmaxLoss(from_logits=True, ignore_index=255, per_image=True)
    compiled_loss = compiled(lambda z: loss(labels, z))
    np.testing.assert_allclose(float(compiled_loss(logits.astype("float32"))), float(loss(labels, logits)), rtol=1e-5)


@tensorflow_only
def test_mirrored_per_image_is_exact_and_batch_is_mean_of_shards(rng, two_device_strategy):
    import tensorflow as tf

    labels, logits = sparse_logits_with_ignored(rng)
    logits = logits.astype("float32")
    dataset = tf.data.Dataset.from_tensor_slices((labels, logits)).batch(len(labels))
    y, z = next(iter(two_device_strategy.experimental_distribute_dataset(dataset)))
    for per_image, expected in [
        (True, oref.lovasz_softmax(labels, logits, from_logits=True, ignore_index=255, per_image=True).mean()),
        (
            False,
            np.mean(
                [
                    oref.lovasz_softmax(labels[s], logits[s], from_logits=True, ignore_index=255)
                    for s in (slice(0, 2), slice(2, 4))
                ]
            ),
        ),
    ]:
        loss = LovaszSoftmaxLoss(from_logits=True, ignore_index=255, per_image=per_image)
        values = tf.function(lambda y, z, loss=loss: two_device_strategy.run(loss, args=(y, z)))(y, z)
        total = float(two_device_strategy.reduce("SUM", values, axis=None))
        assert total == pytest.approx(expected, rel=1e-5)


def test_aliases_and_config():
    assert type(get("lovasz_softmax")) is LovaszSoftmaxLoss
    assert type(get("lovasz_hinge")) is LovaszHingeLoss
    loss = LovaszSoftmaxLoss(from_logits=True, per_image=True, classes="all", ignore_index=3, reduction="sum")
    config = json.loads(json.dumps(loss.get_config()))
    assert LovaszSoftmaxLoss.from_config(config).get_config() == loss.get_config()
    hinge = LovaszHingeLoss(per_image=False, ignore_index=9, name="h")
    assert LovaszHingeLoss.from_config(hinge.get_config()).get_config() == hinge.get_config()


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"`classes` must be one of \['present', 'all'\].*Did you mean 'present'"):
        LovaszSoftmaxLoss(classes="presnt")
    with pytest.raises(TypeError, match=r"`ignore_index` must be an integer"):
        LovaszHingeLoss(ignore_index=2.5)


@pytest.mark.parametrize("case", BATCH_CASES, ids=[c.id for c in BATCH_CASES])
def test_batch_lovasz_fits_with_jit_compile(case):
    # The contract's fit check, for the batch cases (their MirroredStrategy behaviour differs
    # by design and is tested above, so they are not `full` contract cases).
    LossContract.test_fit_with_jit_compile_matches_eager_loss(None, case)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
def test_sort_keys_order_like_the_errors(dtype):
    from keras import ops

    from keras_lossopt.losses.lovasz import _order_bits

    errors = np.array([0.5, -0.0, 0.0, 3.0, np.inf, 1e-30, 0.25, 2.0, 0.5])
    keys = np.asarray(ops.convert_to_numpy(_order_bits(ops.cast(errors, dtype))))
    # -0.0 ties with 0.0; 1e-30 is 0 in float16 and positive in the others.
    tiny = 0.0 if dtype == "float16" else 1e-30
    expected = np.array([0.5, 0.0, 0.0, 3.0, np.inf, tiny, 0.25, 2.0, 0.5])
    np.testing.assert_array_equal(np.argsort(-keys, kind="stable"), np.argsort(-expected, kind="stable"))


def test_targets_packed_in_the_sort_key_give_the_gathered_result(rng):
    from keras_lossopt.losses.lovasz import _lovasz_extension

    targets = (rng.uniform(size=(3, 500)) < 0.3).astype("float32")
    errors = np.abs(targets - rng.uniform(size=targets.shape)).astype("float32")
    targets[:, :50], errors[:, :50] = 0.0, 0.0  # ties at zero, as ignored pixels give
    results = [
        value_and_gradient(lambda e, packed=packed: _lovasz_extension(e, targets, binary_targets=packed)[0], errors)
        for packed in (True, False)
    ]
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-6)
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-5, atol=1e-9)
    reference = [oref.lovasz_extension(errors[i].astype("float64"), targets[i]) for i in range(3)]
    np.testing.assert_allclose(results[0][0], reference, rtol=1e-5)


@pytest.mark.parametrize("binary_targets", [True, False])
def test_weights_called_eagerly_equal_the_plain_function_for_any_shape(rng, binary_targets):
    # On TensorFlow the eager call runs one tf.function traced for any shape: a second shape
    # must not reuse the first one's static sizes.
    from keras import ops

    from keras_lossopt.losses.lovasz import _lovasz_weights

    for shape in [(2, 3, 40), (1, 2, 77), (5, 1)]:
        targets = (rng.uniform(size=shape) < 0.3).astype("float32")
        errors = np.abs(targets - rng.uniform(size=shape)).astype("float32")
        args = (ops.convert_to_tensor(errors), ops.convert_to_tensor(targets), binary_targets)
        got, totals = (ops.convert_to_numpy(x) for x in _lovasz_weights(*args))
        expected, expected_totals = (ops.convert_to_numpy(x) for x in _lovasz_weights.__wrapped__(*args))
        np.testing.assert_allclose(got, expected, rtol=1e-6)
        np.testing.assert_array_equal(totals, expected_totals)
        np.testing.assert_array_equal(totals, targets.sum(axis=-1))
        assert got.shape == shape


@pytest.mark.parametrize("length", [1, 5, 31, 32, 33, 100, 257])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_blocked_cumulative_sum_equals_numpy_cumsum(rng, length, dtype):
    from keras import ops

    from keras_lossopt.losses.lovasz import _cumulative_sum

    values = (rng.uniform(size=(3, 2, length)) < 0.4).astype(dtype)
    values[0, 0] = rng.uniform(size=length)  # soft targets too
    offset = rng.integers(0, 50, size=(3, 2, 1)).astype(dtype)
    tensor = ops.convert_to_tensor(values)  # float32 on JAX without x64
    got = ops.convert_to_numpy(_cumulative_sum(tensor, offset=ops.convert_to_tensor(offset, tensor.dtype)))
    assert got.shape == values.shape and got.dtype == ops.convert_to_numpy(tensor).dtype
    np.testing.assert_allclose(got, offset + np.cumsum(values.astype("float64"), axis=-1), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(got[1:], offset[1:] + np.cumsum(values[1:], axis=-1))  # 0/1 sums: exact


@tensorflow_only
def test_blocked_cumulative_sum_with_unknown_length_in_a_graph(rng):
    import tensorflow as tf

    from keras_lossopt.losses.lovasz import _cumulative_sum

    spec = tf.TensorSpec((None, None), tf.float32)
    scan = tf.function(lambda v: _cumulative_sum(v, offset=tf.zeros((tf.shape(v)[0], 1))), input_signature=[spec])
    for shape in [(2, 45), (1, 64), (3, 1)]:
        values = (rng.uniform(size=shape) < 0.5).astype("float32")
        np.testing.assert_array_equal(scan(values).numpy(), np.cumsum(values, axis=-1))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision_loss_counts_beyond_the_dtype_integer_range(rng, dtype):
    # 4,608 pixels: bfloat16 counts only to 256 and float16 to 2,048 exactly; the Jaccard
    # increments are computed in float32 whatever the errors' dtype (bfloat16 counts gave 0.58).
    import keras

    labels = rng.integers(0, 3, size=(2, 48, 48))
    logits = keras.ops.cast(rng.normal(scale=2.0, size=(2, 48, 48, 3)), dtype)
    rounded = keras.ops.convert_to_numpy(keras.ops.cast(logits, "float32")).astype("float64")
    got = LovaszSoftmaxLoss(from_logits=True, dtype=dtype)(labels, logits)
    expected = oref.lovasz_softmax(labels, rounded, from_logits=True)
    assert float(keras.ops.convert_to_numpy(keras.ops.cast(got, "float32"))) == pytest.approx(expected, rel=1e-2)


def test_large_logits_give_the_reference_gradient(rng):
    # The softmax over the class axis first, with its gradient written out, against float64
    # central differences at every logit; logits up to about +-50 saturate most probabilities.
    labels, logits = sparse_logits_with_ignored(rng)
    logits = 8.0 * logits

    def reference(z):
        return oref.lovasz_softmax(labels, z, from_logits=True, ignore_index=255)

    loss = LovaszSoftmaxLoss(from_logits=True, ignore_index=255)
    value, grad = value_and_gradient(lambda z: loss(labels, z), logits.astype("float32"))
    assert float(value) == pytest.approx(reference(logits), rel=1e-5)
    numeric, step = np.zeros_like(logits), 1e-5
    for index in np.ndindex(logits.shape):
        up, down = logits.copy(), logits.copy()
        up[index] += step
        down[index] -= step
        numeric[index] = (reference(up) - reference(down)) / (2 * step)
    assert np.sum(np.abs(numeric) > 1e-4) > 20  # enough unsaturated logits to test
    np.testing.assert_allclose(np.asarray(grad), numeric, rtol=1e-3, atol=1e-6)


@tensorflow_only
@pytest.mark.parametrize("per_image", [False, True])
def test_eager_graph_call_differentiates_for_any_shape_and_class_count(rng, per_image):
    # Eagerly the loss past its checks runs as one tf.function, traced for any shape and
    # once per class count: values and gradients as in a compiled step, for each shape.
    import tensorflow as tf

    loss = LovaszSoftmaxLoss(from_logits=True, per_image=per_image, ignore_index=255)

    @tf.function
    def compiled_step(y, z):
        with tf.GradientTape() as tape:
            tape.watch(z)
            value = loss(y, z)
        return value, tape.gradient(value, z)

    for shape in [(2, 8, 8, 3), (3, 5, 7, 3), (2, 6, 6, 4), (1, 9, 2, 3)]:
        labels = rng.integers(0, shape[-1], size=shape[:-1])
        labels[0, 0, 0] = 255
        logits = rng.normal(scale=2.0, size=shape).astype("float32")
        value, grad = value_and_gradient(lambda z, labels=labels: loss(labels, z), logits)
        expected = oref.lovasz_softmax(labels, logits, from_logits=True, ignore_index=255, per_image=per_image)
        assert float(value) == pytest.approx(float(np.mean(expected)), rel=1e-5)
        compiled_value, compiled_grad = compiled_step(tf.constant(labels), tf.constant(logits))
        assert float(value) == pytest.approx(float(compiled_value), rel=1e-6)
        np.testing.assert_allclose(np.asarray(grad), np.asarray(compiled_grad), rtol=1e-5, atol=1e-8)
