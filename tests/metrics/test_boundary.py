"""HausdorffDistance and SurfaceDice against a float64 port of MONAI's compute_* functions."""

import itertools
import json

import keras
import numpy as np
import pytest
from scipy.ndimage import binary_erosion, distance_transform_edt

from keras_lossopt.metrics import HausdorffDistance, SurfaceDice, hausdorff_distance, surface_dice
from tests.backends import compiled

C = 3


# --- MONAI's functions (monai/metrics/utils.py, hausdorff_distance.py, surface_dice.py), channel-last ---


def get_mask_edges(seg_pred, seg_gt):
    return binary_erosion(seg_pred) ^ seg_pred, binary_erosion(seg_gt) ^ seg_gt


def get_surface_distance(seg_pred, seg_gt, spacing=None):
    if not seg_gt.any():
        dis = np.inf * np.ones(seg_gt.shape)
    else:
        if not np.any(seg_pred):
            return (np.inf * np.ones(seg_gt.shape))[seg_gt]
        dis = distance_transform_edt(~seg_gt, sampling=spacing)
    return dis[seg_pred]


def compute_percent_hausdorff_distance(edges_pred, edges_gt, percentile, spacing=None):
    surface_distance = get_surface_distance(edges_pred, edges_gt, spacing)
    if surface_distance.shape == (0,):
        return np.nan
    if not percentile:
        return surface_distance.max()
    return np.percentile(surface_distance, percentile)


def one_hot_channels(y_pred, y, include_background):
    if not include_background:
        y_pred, y = y_pred[..., 1:], y[..., 1:]
    return y_pred.astype(bool), y.astype(bool)


def monai_hausdorff(y_pred, y, include_background=False, percentile=None, spacing=None):
    """MONAI's values, with inf where exactly one mask is empty (the library's documented choice).

    MONAI gives NaN there for a percentile (NumPy interpolates between infinities) and inf
    for the maximum; the NaN would drop a missed class from the mean.
    """
    y_pred, y = one_hot_channels(y_pred, y, include_background)
    hd = np.empty((y.shape[0], y.shape[-1]))
    for b, c in np.ndindex(*hd.shape):
        edges_pred, edges_gt = get_mask_edges(y_pred[b, ..., c], y[b, ..., c])
        with np.errstate(invalid="ignore"):
            distance_1 = compute_percent_hausdorff_distance(edges_pred, edges_gt, percentile, spacing)
            distance_2 = compute_percent_hausdorff_distance(edges_gt, edges_pred, percentile, spacing)
        hd[b, c] = max(distance_1, distance_2)
        if edges_pred.any() != edges_gt.any():
            assert np.isnan(hd[b, c]) or np.isinf(hd[b, c])
            hd[b, c] = np.inf
    return hd


def monai_surface_dice(y_pred, y, class_thresholds, include_background=False, spacing=None):
    y_pred, y = one_hot_channels(y_pred, y, include_background)
    nsd = np.empty((y.shape[0], y.shape[-1]))
    for b, c in np.ndindex(*nsd.shape):
        edges_pred, edges_gt = get_mask_edges(y_pred[b, ..., c], y[b, ..., c])
        distances_pred_gt = get_surface_distance(edges_pred, edges_gt, spacing)
        distances_gt_pred = get_surface_distance(edges_gt, edges_pred, spacing)
        complete = len(distances_pred_gt) + len(distances_gt_pred)
        correct = np.sum(distances_pred_gt <= class_thresholds[c]) + np.sum(distances_gt_pred <= class_thresholds[c])
        nsd[b, c] = np.nan if complete == 0 else correct / complete
    return nsd


# --- data ---


def segmentation(rng, n=4, size=4, block=3):
    labels = np.kron(rng.integers(0, C, size=(n, size, size)), np.ones((1, block, block), np.int64))
    labels[1][labels[1] == 2] = 1  # class 2 absent from image 1
    labels[2, :3, :3] = 1  # class 1 present in image 2 ...
    logits = 2.0 * np.eye(C)[labels] + rng.normal(scale=1.2, size=(*labels.shape, C))
    logits[2, ..., 1] -= 10.0  # ... but never predicted there: an infinite distance
    return labels, logits


def hard(logits):
    return np.eye(logits.shape[-1])[logits.argmax(-1)]


def assert_same(got, expected):
    got, expected = np.asarray(got, np.float64), np.asarray(expected, np.float64)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(expected))
    finite = np.isfinite(expected)
    np.testing.assert_allclose(got[finite], expected[finite], rtol=1e-5)


@pytest.mark.parametrize("percentile", [95.0, 50.0, 100.0, None])
@pytest.mark.parametrize("include_background", [False, True])
def test_hausdorff_distance_is_monais(rng, percentile, include_background):
    labels, logits = segmentation(rng)
    got = hausdorff_distance(labels, logits, percentile=percentile, include_background=include_background)
    expected = monai_hausdorff(hard(logits), np.eye(C)[labels], include_background, percentile)
    assert np.isinf(expected).any() and np.isfinite(expected).any()
    assert_same(got, expected)


@pytest.mark.parametrize("tolerance", [0.0, 1.0, 2.5, (1.0, 3.0)])
def test_surface_dice_is_monais(rng, tolerance):
    labels, logits = segmentation(rng)
    got = surface_dice(labels, logits, tolerance=tolerance)
    thresholds = list(tolerance) if isinstance(tolerance, tuple) else [tolerance] * (C - 1)
    assert_same(got, monai_surface_dice(hard(logits), np.eye(C)[labels], thresholds))


def test_3d_binary_volumes(rng):
    y = np.kron(rng.integers(0, 2, size=(2, 3, 3, 3)), np.ones((1, 2, 2, 2)))[..., None]
    logits = 3.0 * (y - 0.5) + rng.normal(scale=1.5, size=y.shape)
    predicted = (logits > 0).astype(float)
    got_hd = hausdorff_distance(y, logits, mode="binary", from_logits=True)
    assert_same(got_hd, monai_hausdorff(predicted, y, include_background=True, percentile=95))
    got_nsd = surface_dice(y, 1 / (1 + np.exp(-logits)), tolerance=1.5, mode="binary")
    assert_same(got_nsd, monai_surface_dice(predicted, y, [1.5], include_background=True))


@pytest.mark.parametrize("spacing", [0.5, (0.7, 2.0)], ids=["isotropic", "anisotropic"])
def test_spacing_is_monais(rng, spacing):
    labels, logits = segmentation(rng)
    sampling = spacing if isinstance(spacing, tuple) else (spacing, spacing)
    got = hausdorff_distance(labels, logits, spacing=spacing)
    assert_same(got, monai_hausdorff(hard(logits), np.eye(C)[labels], percentile=95, spacing=sampling))
    expected = monai_surface_dice(hard(logits), np.eye(C)[labels], [1.5] * (C - 1), spacing=sampling)
    assert_same(surface_dice(labels, logits, tolerance=1.5, spacing=spacing), expected)
    metric = SurfaceDice(tolerance=1.5, spacing=spacing)
    metric.update_state(labels, logits)
    assert float(metric.result()) == pytest.approx(np.nanmean(expected), rel=1e-6)


def test_anisotropic_volumes_are_monais(rng):
    y = np.kron(rng.integers(0, 2, size=(2, 3, 3, 3)), np.ones((1, 2, 2, 2)))[..., None]
    logits = 3.0 * (y - 0.5) + rng.normal(scale=1.5, size=y.shape)
    predicted = (logits > 0).astype(float)
    spacing = (3.0, 0.8, 0.8)
    got = hausdorff_distance(y, logits, mode="binary", from_logits=True, spacing=spacing)
    assert_same(got, monai_hausdorff(predicted, y, include_background=True, percentile=95, spacing=spacing))
    got = surface_dice(y, logits, mode="binary", from_logits=True, tolerance=2.0, spacing=spacing)
    assert_same(got, monai_surface_dice(predicted, y, [2.0], include_background=True, spacing=spacing))


def test_empty_masks_give_nan_inf_and_zero():
    y = np.zeros((3, 6, 6, 1))
    y[1:, 2:4, 2:4] = 1.0
    pred = np.zeros_like(y)
    pred[0, 1:3, 1:3] = 1.0  # image 0: empty target; image 1: empty prediction; image 2: both present
    pred[2, 2:4, 2:4] = 1.0
    both_empty = np.zeros((1, 6, 6, 1))
    assert np.isnan(float(hausdorff_distance(both_empty, both_empty, mode="binary")[0, 0]))
    assert np.isnan(float(surface_dice(both_empty, both_empty, mode="binary")[0, 0]))
    hd = np.asarray(hausdorff_distance(y, pred, mode="binary"))[:, 0]
    assert np.isinf(hd[0]) and np.isinf(hd[1]) and hd[2] == 0.0
    np.testing.assert_array_equal(np.asarray(surface_dice(y, pred, mode="binary"))[:, 0], [0.0, 0.0, 1.0])


def test_metrics_average_defined_pairs_over_batches_with_weights(rng):
    labels, logits = segmentation(rng)
    labels2, logits2 = segmentation(rng)
    logits[2, ..., 1] += 10.0  # no inf this time: a finite mean to compare
    logits2[2, ..., 1] += 10.0
    weights = [np.array([1.0, 2.0, 0.5, 1.0]), np.array([0.0, 1.0, 1.0, 3.0])]
    for metric, reference in (
        (HausdorffDistance(), lambda p, y: monai_hausdorff(p, y, percentile=95)),
        (SurfaceDice(tolerance=1.0), lambda p, y: monai_surface_dice(p, y, [1.0, 1.0])),
    ):
        values, counts = [], []
        for (y, z), w in zip(((labels, logits), (labels2, logits2)), weights):
            metric.update_state(y, z, sample_weight=w)
            expected = reference(hard(z), np.eye(C)[y])
            defined = ~np.isnan(expected)
            values.append(np.where(defined, expected * w[:, None], 0.0).sum())
            counts.append(np.where(defined, w[:, None], 0.0).sum())
        assert float(metric.result()) == pytest.approx(sum(values) / sum(counts), rel=1e-5)
        metric.reset_state()
        assert np.isnan(float(metric.result()))


def test_functions_compile_with_xla(rng):
    labels, logits = segmentation(rng)
    logits = keras.ops.convert_to_tensor(logits, "float32")
    for function in (hausdorff_distance, surface_dice):
        compiled_function = compiled(lambda y, z, f=function: f(y, z))
        assert_same(compiled_function(labels, logits), function(labels, logits))


def test_configs_round_trip_and_a_model_reloads_with_them(tmp_path):
    metrics = [
        HausdorffDistance(percentile=None, mode="binary", from_logits=True, threshold=0.3, include_background=True),
        SurfaceDice(tolerance=[1.0, 2.0], name="nsd"),
        SurfaceDice(spacing=(0.5, 2.0)),
        HausdorffDistance(spacing=0.7),
    ]
    for metric in metrics:
        config = json.loads(json.dumps(metric.get_config()))
        assert type(metric).from_config(config).get_config() == metric.get_config()
    inputs = keras.Input((6,))
    outputs = keras.layers.Reshape((6, 6, 1))(keras.layers.Dense(36)(inputs))
    model = keras.Model(inputs, outputs)
    model.compile(loss="binary_crossentropy", metrics=[HausdorffDistance(mode="binary", from_logits=True)])
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(4, 6)).astype("float32"), (rng.uniform(size=(4, 6, 6, 1)) > 0.5).astype("float32")
    before = model.evaluate(x, y, verbose=0, return_dict=True)
    model.save(tmp_path / "model.keras")
    after = keras.models.load_model(tmp_path / "model.keras").evaluate(x, y, verbose=0, return_dict=True)
    assert after == pytest.approx(before, rel=1e-6)
    assert "hausdorff_distance" in after


def test_percentile_interpolates_like_numpy():
    # One image whose 20 predicted-edge distances are known: a wide gap of growing width.
    for q in (0.0, 33.0, 90.0, 100.0):
        y = np.zeros((1, 3, 12, 1))
        y[0, :, :6] = 1.0
        pred = np.zeros_like(y)
        pred[0, :, :9] = 1.0
        got = float(np.asarray(hausdorff_distance(y, pred, percentile=q, mode="binary"))[0, 0])
        edges_pred, edges_gt = get_mask_edges(pred[0, ..., 0] > 0, y[0, ..., 0] > 0)
        d1 = distance_transform_edt(~edges_gt)[edges_pred]
        d2 = distance_transform_edt(~edges_pred)[edges_gt]
        assert got == pytest.approx(max(np.percentile(d1, q), np.percentile(d2, q)), rel=1e-6)


def test_every_pair_of_classes_is_scored_independently(rng):
    labels, logits = segmentation(rng)
    full = np.asarray(hausdorff_distance(labels, logits, include_background=True))
    for c in range(C):
        single = np.asarray(
            hausdorff_distance((labels == c).astype("float32")[..., None], hard(logits)[..., c : c + 1], mode="binary")
        )
        assert_same(single[:, 0], full[:, c])
    assert list(itertools.islice(full.shape, 2)) == [4, C]
