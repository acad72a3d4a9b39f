"""GradientDetector on NumPy arrays only: each rule on hand-made rows, the vectorised rules
against a row-by-row reference, blocks split anywhere, and blocks recorded on the problem
bench (tests/callbacks/data/recorded_blocks.npz, written by tests/callbacks/recorded_blocks.py)."""

import collections
import pathlib

import numpy as np
import pytest

from keras_lossopt.callbacks.detection import GradientDetector

LAYERS = ("a", "b", "c")


def block(norms, nonfinite=None, weights=None):
    norms = np.asarray(norms, dtype="float64")
    out = {"grad_norm": norms, "nonfinite_share": np.zeros_like(norms) if nonfinite is None else np.asarray(nonfinite)}
    if weights is not None:
        out["weight_norm"] = np.asarray(weights, dtype="float64")
    return out


def rows(*layer_norms):
    """Rows of layer norms, with the global norm (root of the sum of squares) appended."""
    norms = np.asarray(layer_norms, dtype="float64")
    return np.concatenate([norms, np.sqrt((norms**2).sum(axis=1, keepdims=True))], axis=1)


def summary(findings):
    return [(f.kind, f.step, f.layers) for f in findings]


def test_vanishing_ratio_to_the_last_layer_after_patience():
    detector = GradientDetector(LAYERS, patience=2, growth_window=2)
    norms = rows([1e-5, 0.5, 1.0], [1e-5, 2e-4, 1.0], [1e-5, 0.5, 1.0])
    found = detector.update(np.array([0, 1, 2]), block(norms))
    assert summary(found) == [("vanishing", 1, ("a", "b"))]
    evidence = found[0].evidence
    assert evidence["last_layer_norm"] == 1.0 and evidence["min_norm"] == 1e-5
    assert evidence["min_ratio_to_last"] == pytest.approx(1e-5) and evidence["records"] == 2
    assert found[0].remedy and found[0].cause == ""


def test_vanishing_needs_half_of_a_full_window_from_the_first_record():
    # Batch size 1: two samples that switch layer "a" off at the first two steps (the
    # corpus' healthy/70 was flagged at step 1 when the share counted only rows seen).
    noise = rows(*([[1e-5, 1, 1]] * 2 + [[0.5, 1, 1]] * 30))
    assert GradientDetector(LAYERS).update(np.arange(32), block(noise)) == []
    # A structural cause holds in every row: half of 20 at the 10th record, patience 2 at the 11th.
    dead = rows(*[[1e-5, 1, 1]] * 12)
    assert summary(GradientDetector(LAYERS).update(np.arange(12), block(dead))) == [("vanishing", 10, ("a",))]


def test_vanishing_floor_names_every_layer():
    detector = GradientDetector(LAYERS, patience=1, vanishing_floor=1e-7, growth_window=2)
    found = detector.update(np.array([5]), block(rows([1e-9, 1e-9, 1e-9])))
    assert summary(found) == [("vanishing", 5, LAYERS)]
    assert found[0].evidence["floor"] == 1e-7


def test_the_ceiling_scales_with_the_square_root_of_the_first_loss():
    # A regression in natural units: first loss 4e6 (errors of 2,000), gradient norm 3e4
    # while it trains; the same norm on a loss of order 1 is an explosion.
    norms = rows([300.0, 1e4, 3e4])
    scaled = GradientDetector(LAYERS, patience=1)
    scaled.loss_scale = 2000.0
    assert scaled.update(np.array([0]), block(norms)) == []
    found = GradientDetector(LAYERS, patience=1).update(np.array([0]), block(norms))
    assert summary(found) == [("exploding", 0, ("b", "c"))]
    assert found[0].evidence["ceiling"] == 1e3


def test_exploding_by_ceiling_and_by_growth():
    detector = GradientDetector(LAYERS, patience=1, exploding_norm=100.0, exploding_growth=10.0, growth_window=3)
    # Ceiling: the layers within 10x of the largest norm are named.
    found = detector.update(np.array([0]), block(rows([1.0, 50.0, 200.0])))
    assert summary(found) == [("exploding", 0, ("b", "c"))]
    assert found[0].evidence["max_layer_norm"] == 200.0
    # Growth: over the median of the 4 rows before (a fresh detector), and beyond 4 robust
    # standard deviations of their log10.
    detector = GradientDetector(LAYERS, patience=1, exploding_norm=1e6, exploding_growth=10.0, growth_window=4)
    norms = rows([0.1, 0, 0], [1, 0, 0], [1, 0, 0], [2, 0, 0], [50, 0, 0], [200, 0, 0])
    found = detector.update(np.arange(6), block(norms))
    # Row 4 (50): the window holds 0.1, 1, 1, 2: median 1, log10 spread
    # 1.4826 * median(|-1|, 0, 0, 0.301) = 0.223 -> allowed max(10, 10**0.89 = 7.8) = 10: 50 fires.
    # Row 5 would fire too but is the same kind, reported once.
    assert summary(found) == [("exploding", 4, ("a",))]
    evidence = found[0].evidence
    logs = np.log10([0.1, 1, 1, 2])
    spread = 1.4826 * np.median(np.abs(logs - np.median(logs)))
    assert evidence["growth"] == pytest.approx(50.0) and evidence["previous_median_norm"] == pytest.approx(1.0)
    assert evidence["spread_decades"] == pytest.approx(spread)
    assert evidence["growth_allowed"] == pytest.approx(max(10.0, 10 ** (4 * spread))) and evidence["window"] == 4


def test_single_sample_noise_is_neither_exploding_nor_vanishing(rng):
    # Batch size 1: per-sample global norms spread over two orders of magnitude (log-normal,
    # 0.2..14 on digits), and now and then a sample whose ReLU layer "a" is all off.
    count = 400
    norms = rows(*np.column_stack([np.full(count, 0.5), np.ones(count), np.ones(count)]))
    norms[:, -1] = 10 ** rng.normal(0.3, 0.5, size=count)
    off = rng.choice(count - 1, size=12, replace=False)
    off = np.concatenate([off, off[:4] + 1])  # some of them on consecutive samples
    norms[off, 0] = 0.0
    detector = GradientDetector(LAYERS)
    assert summary(detector.update(np.arange(count), block(norms))) == []
    # What the guards face: norms spanning orders of magnitude, and dead rows in a row (a
    # 2-row streak, which the plain patience test alone would report).
    assert norms[:, -1].max() / norms[:, -1].min() > 100
    assert np.any(np.diff(np.flatnonzero(norms[:, 0] == 0)) == 1)


def test_a_real_explosion_leaves_the_noise_behind(rng):
    noisy = 10 ** rng.normal(0.3, 0.5, size=60)
    exploding = np.concatenate([noisy, 10 ** np.linspace(2, 9, 10)])
    norms = np.column_stack([exploding / 2, exploding / 2, exploding])
    found = GradientDetector(LAYERS[:2], exploding_norm=1e12).update(np.arange(70), block(norms))
    assert [f.kind for f in found] == ["exploding"] and 60 <= found[0].step <= 69
    assert found[0].evidence["growth"] > 1e3


def test_non_finite_gradients_and_weights_at_once_and_transparent_to_the_other_rules():
    detector = GradientDetector(LAYERS, patience=2, growth_window=2)
    norms = rows([1e-5, 1, 1], [1, 1, 1], [1e-5, 1, 1], [1, 1, 1])
    nonfinite = np.zeros_like(norms)
    nonfinite[1, [1, 3]] = 0.25
    found = detector.update(np.arange(4), block(norms, nonfinite))
    # Row 1 is non-finite: it neither breaks nor extends the vanishing streak (rows 0, 2).
    assert summary(found) == [("non_finite", 1, ("b",)), ("vanishing", 2, ("a",))]
    assert found[0].evidence["nonfinite_share"] == 0.25

    detector = GradientDetector(LAYERS)
    weights = np.ones_like(norms)
    weights[3, [0, 3]] = np.nan  # a NaN that arrived on a step that was not recorded
    found = detector.update(np.arange(4), block(norms, weights=weights))
    assert summary(found) == [("non_finite", 3, ("a",))]
    assert found[0].evidence["layers_with_nonfinite_weights"] == 1
    assert detector.last_nonfinite_layers == ("a",)


def test_each_kind_once_unless_it_repeats():
    norms = rows(*[[1e-5, 1, 1]] * 6)
    nonfinite = np.zeros_like(norms)
    nonfinite[[1, 4]] = 0.5
    once = GradientDetector(LAYERS, patience=1, growth_window=2)
    assert summary(once.update(np.arange(6), block(norms, nonfinite))) == [
        ("vanishing", 0, ("a",)),
        ("non_finite", 1, LAYERS),
    ]
    assert once.update(np.arange(6, 12), block(norms, nonfinite)) == []
    assert once.report_non_finite(12, {"loss": float("nan")}) is None
    # A remedy acts again: the count restarts after each finding; non-finite rows once a block.
    repeats = GradientDetector(LAYERS, patience=2, growth_window=2, repeat=("vanishing", "non_finite"))
    kinds = summary(repeats.update(np.arange(6), block(norms, nonfinite)))
    assert kinds == [("non_finite", 1, LAYERS), ("vanishing", 2, ("a",)), ("vanishing", 5, ("a",))]
    assert repeats.report_non_finite(6, {"loss": float("inf")}).evidence == {"loss": float("inf")}


def test_shapes_are_checked():
    detector = GradientDetector(LAYERS)
    with pytest.raises(ValueError, match=r"grad_norm.*\(2, 4\)"):
        detector.update(np.arange(2), block(np.ones((2, 3))))
    assert detector.update(np.zeros(0), block(np.zeros((0, 4)))) == []


class RowByRowReference:
    """The rules written plainly, one row at a time."""

    def __init__(self, layers, patience=2, ratio=1e-3, floor=1e-7, ceiling=1e3, growth=1e3, window=20):
        self.layers, self.patience = layers, patience
        self.ratio, self.floor, self.ceiling, self.growth = ratio, floor, ceiling, growth
        self.recent = collections.deque(maxlen=window)
        self.recent_vanishing = collections.deque(maxlen=window)
        self.window = window
        self.streak = {"vanishing": 0, "exploding": 0}
        self.reported = set()

    def update(self, steps, blk):
        out = []
        for i, step in enumerate(steps):
            norms, share = blk["grad_norm"][i], blk["nonfinite_share"][i]
            weights = blk["weight_norm"][i]
            bad = [n for n, s, w in zip(self.layers, share, weights) if s > 0 or not np.isfinite(w)]
            if bad or share[-1] > 0:
                if "non_finite" not in self.reported:
                    self.reported.add("non_finite")
                    out.append(("non_finite", int(step), tuple(bad)))
                continue
            layer, g = norms[:-1], norms[-1]
            vanishing = ()
            if g < self.floor:
                vanishing = self.layers
            elif len(layer) >= 2 and layer[-1] > 0 and np.isfinite(layer).all():
                vanishing = tuple(n for n, v in zip(self.layers, layer[:-1]) if v / layer[-1] < self.ratio)
            self.recent_vanishing.append(bool(vanishing))
            if np.sum(self.recent_vanishing) / self.window < 0.5:  # a full window, from the first row
                vanishing = ()
            past = np.log10([p for p in self.recent if np.isfinite(p) and p > 0])
            self.recent.append(g)
            growth, allowed = 1.0, self.growth
            if past.size:
                center = np.median(past)
                growth = g / 10**center
                allowed = max(self.growth, 10 ** (4 * 1.4826 * np.median(np.abs(past - center))))
            exploding = ()
            if not (g <= self.ceiling and growth <= allowed):
                top = np.max(layer)
                exploding = tuple(n for n, v in zip(self.layers, layer) if v >= 0.1 * top)
            for kind, layers in (("vanishing", vanishing), ("exploding", exploding)):
                self.streak[kind] = self.streak[kind] + 1 if layers else 0
                if layers and self.streak[kind] >= self.patience and kind not in self.reported:
                    self.reported.add(kind)
                    out.append((kind, int(step), layers))
        return out


def random_rows(rng, count, layers):
    """Norms spanning 1e-9..1e5, with zeros, infs, NaNs, NaN weights and non-finite shares sprinkled in."""
    norms = 10.0 ** rng.uniform(-9, 5, size=(count, layers + 1))
    norms[rng.random(norms.shape) < 0.03] = 0.0
    norms[rng.random(norms.shape) < 0.02] = np.inf
    norms[rng.random(norms.shape) < 0.01] = np.nan
    nonfinite = np.where(rng.random(norms.shape) < 0.01, 0.5, 0.0)
    weights = np.where(rng.random(norms.shape) < 0.01, np.nan, 1.0)
    return block(norms, nonfinite, weights)


@pytest.mark.parametrize("seed", range(40))
def test_vectorised_rules_equal_the_row_by_row_reference_for_any_split(seed):
    rng = np.random.default_rng(seed)
    layers = tuple(f"l{i}" for i in range(int(rng.integers(1, 5))))
    count = int(rng.integers(1, 60))
    data = random_rows(rng, count, len(layers))
    steps = np.arange(count) * 3
    settings = {"patience": int(rng.integers(1, 4)), "growth_window": int(rng.integers(1, 25))}
    reference = RowByRowReference(layers, patience=settings["patience"], window=settings["growth_window"])
    expected = reference.update(steps, data)
    detector = GradientDetector(layers, **settings)
    cuts = np.sort(rng.choice(np.arange(1, count), size=min(count - 1, int(rng.integers(0, 4))), replace=False))
    found = []
    for part in np.split(np.arange(count), cuts):
        found += summary(detector.update(steps[part], {k: v[part] for k, v in data.items()}))
    assert found == expected


RECORDED = pathlib.Path(__file__).parent / "data" / "recorded_blocks.npz"


def test_blocks_recorded_on_the_problem_bench_give_the_bench_findings():
    # Each case's records, fed in blocks of 16 as the monitor reads them by default, give
    # the findings the monitor reported while training (kind, step, layers).
    data = np.load(RECORDED)
    cases = sorted({key.split(":")[0] for key in data.files})
    assert len(cases) >= 4
    for case in cases:
        layers = tuple(str(n) for n in data[f"{case}:layers"])
        steps = data[f"{case}:steps"]
        fields = {f: data[f"{case}:{f}"] for f in ("grad_norm", "nonfinite_share", "weight_norm")}
        detector = GradientDetector(layers)
        found = []
        for start in range(0, len(steps), 16):
            part = slice(start, start + 16)
            found += summary(detector.update(steps[part], {k: v[part] for k, v in fields.items()}))
        expected = [
            (str(kind), int(step), tuple(str(n) for n in names.split(",") if n))
            for kind, step, names in data[f"{case}:findings"]
        ]
        assert found == expected, case
