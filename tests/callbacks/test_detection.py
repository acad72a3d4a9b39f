"""GradientDetector on NumPy arrays only: each rule on hand-made rows, the vectorised rules
against a row-by-row reference, blocks split anywhere, and blocks recorded on the problem
bench (tests/callbacks/data/recorded_blocks.npz, written by tests/callbacks/recorded_blocks.py)."""

import collections
import pathlib

import numpy as np
import pytest

from keras_lossopt.callbacks.detection import GradientDetector

LAYERS = ("a", "b", "c")


def block(norms, nonfinite=None, weights=None, loss=None):
    norms = np.asarray(norms, dtype="float64")
    out = {"grad_norm": norms, "nonfinite_share": np.zeros_like(norms) if nonfinite is None else np.asarray(nonfinite)}
    if weights is not None:
        out["weight_norm"] = np.asarray(weights, dtype="float64")
    if loss is not None:
        out["loss"] = np.asarray(loss, dtype="float64")
    return out


def rows(*layer_norms):
    """Rows of layer norms, with the global norm (root of the sum of squares) appended."""
    norms = np.asarray(layer_norms, dtype="float64")
    return np.concatenate([norms, np.sqrt((norms**2).sum(axis=1, keepdims=True))], axis=1)


def summary(findings):
    return [(f.kind, f.step, f.layers) for f in findings]


def test_vanishing_ratio_to_the_last_layer_after_patience():
    detector = GradientDetector(LAYERS, patience=2, growth_window=2, vanishing_share=0.5)
    norms = rows([1e-5, 0.5, 1.0], [1e-5, 2e-4, 1.0], [1e-5, 2e-4, 1.0])
    found = detector.update(np.array([0, 1, 2]), block(norms))
    # Row 1: "a" in both rows of the window, "b" in one of two (share 0.5): both named.
    assert summary(found) == [("vanishing", 1, ("a", "b"))]
    evidence = found[0].evidence
    assert evidence["last_layer_norm"] == 1.0 and evidence["min_norm"] == 1e-5
    assert evidence["min_ratio_to_last"] == pytest.approx(1e-5) and evidence["records"] == 2
    assert evidence["share_of_window"] == 1.0
    assert found[0].remedy and found[0].cause == ""


def test_vanishing_needs_the_same_layer_in_most_of_a_full_window_from_the_first_record():
    # Batch size 1: two samples that switch layer "a" off at the first two steps (the
    # corpus' healthy/70 was flagged at step 1 when the share counted only rows seen).
    noise = rows(*([[1e-5, 1, 1]] * 2 + [[0.5, 1, 1]] * 30))
    assert GradientDetector(LAYERS).update(np.arange(32), block(noise)) == []
    # A structural cause holds in every row: 0.8 of 20 at the 16th record, patience 2 at the 17th.
    dead = rows(*[[1e-5, 1, 1]] * 20)
    assert summary(GradientDetector(LAYERS).update(np.arange(20), block(dead))) == [("vanishing", 16, ("a",))]
    # Layers that take turns: "a" low in the even rows, "b" in the odd ones. Every row has a
    # vanishing layer (the old any-layer share reached 1.0), no layer does so in 0.8 of them.
    turns = rows(*[[1e-5, 1, 1], [1, 1e-5, 1]] * 20)
    assert GradientDetector(LAYERS).update(np.arange(40), block(turns)) == []


def test_noisy_small_batch_early_layers_are_not_vanishing_but_a_saturated_stack_is(rng):
    # Shaped on the corpus' calibration run healthy/290 (tanh + BatchNorm, batch 2, trained):
    # the first layer's norm swings log-uniformly over 1e-7..1e2 from one sample to the next
    # against a last layer near 4, so that it is below 1e-3 of the last layer in about 0.4
    # of the rows (0.6 of some 20-row windows), while the loss falls.
    count = 400
    first = 10 ** rng.uniform(-7, 2, size=count)
    noisy = rows(*np.column_stack([first, 10 ** rng.uniform(-2, 1, size=count), np.full(count, 4.0)]))
    shares = np.convolve(noisy[:, 0] / noisy[:, 2] < 1e-3, np.ones(20), "valid") / 20
    assert 0.5 <= shares.max() < 0.8  # the old rule (any layer, half of the window) fired on it
    assert GradientDetector(LAYERS).update(np.arange(count), block(noisy)) == []
    assert GradientDetector(LAYERS, vanishing_share=0.5).update(np.arange(count), block(noisy)) != []
    # A deep sigmoid stack (the corpus' deep_sigmoid runs): the first layer at 1e-5..1e-4 of
    # the last in every row, with the same sample noise on top.
    stacked = noisy.copy()
    stacked[:, 0] = 4.0 * 10 ** rng.uniform(-5, -4, size=count)
    found = GradientDetector(LAYERS).update(np.arange(count), block(stacked))
    assert summary(found) == [("vanishing", 16, ("a",))]


def test_a_zero_gradient_on_a_fit_batch_is_not_vanishing():
    # The corpus' calibration run healthy/266 (tanh, SGD 1.49, batch 1, trained to 0.97):
    # most samples are predicted with full confidence, loss 0 and gradient exactly 0; the
    # others still have a gradient of 11. Losses as recovered from the running mean (+-1e-3).
    count = 64
    fit = np.arange(count) % 5 != 0
    norms = rows(*[[0.0, 0.0, 0.0] if f else [0.5, 6.0, 9.0] for f in fit])
    loss = np.where(fit, 1e-3 * np.cos(np.arange(count)), 2.0)
    loss[0] = 1.84  # the first batch, at the starting weights
    norms[0] = [6.4, 6.1, 8.9, 11.0]
    assert GradientDetector(LAYERS).update(np.arange(count), block(norms, loss=loss)) == []
    # A dead network (the corpus' wrong_output_activation runs): the same zero gradients, on
    # batches whose loss stays where it started.
    dead_loss = np.where(fit, 0.69, 0.7)
    dead_loss[0] = 1.84
    dead = rows(*[[0.0, 0.0, 0.0]] * count)
    dead[0] = norms[0]
    found = GradientDetector(LAYERS).update(np.arange(count), block(dead, loss=dead_loss))
    assert summary(found) == [("vanishing", 17, LAYERS)]
    assert found[0].evidence["floor"] == 1e-7
    # Without losses (a detector fed by hand) a zero gradient counts, as before; and so it
    # does for a loss whose best value is not 0 (cosine similarity starts below 0).
    assert GradientDetector(LAYERS).update(np.arange(count), block(norms)) != []
    assert GradientDetector(LAYERS).update(np.arange(count), block(norms, loss=loss - 2.0)) != []


def test_vanishing_floor_names_every_layer():
    detector = GradientDetector(LAYERS, patience=1, vanishing_floor=1e-7, growth_window=2, vanishing_share=0.5)
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


def test_a_regression_ceiling_scales_with_the_runs_first_gradient_norm(rng):
    # Shaped on the corpus' calibration run healthy/240 (targets in the thousands, MSE, SGD,
    # batch 16; it trained, the loss halved): first loss 3.3e6 (sqrt 1,830), first gradient
    # norm 2.6e4, which grows about 100x, to 1-3e6, while the loss falls: past the ceiling of
    # 1e3 x sqrt(first loss) = 1.8e6 that fired on it, far below 1e3 x its first norm.
    count = 320
    level = 2.6e4 * 10 ** np.concatenate([np.zeros(200), np.linspace(0, 2.0, 120)])
    norms = level[:, None] * 10 ** rng.normal(0, 0.1, size=(count, 1)) * np.array([[0.6, 0.5, 0.45, 1.0]])
    norms[0, -1] = 2.6e4

    def regression(scaled):
        detector = GradientDetector(LAYERS)
        detector.loss_scale, detector.scale_with_start = 1830.0, scaled
        return detector

    assert norms[:, -1].max() > 1830.0 * 1e3  # the old ceiling
    assert regression(True).update(np.arange(count), block(norms)) == []
    assert [f.kind for f in regression(False).update(np.arange(count), block(norms))] == ["exploding"]
    # A real divergence of the same run still fires: 1e9 is 4e4 x its first norm.
    diverged = norms.copy()
    diverged[250:] *= np.linspace(10, 1e5, count - 250)[:, None]
    found = regression(True).update(np.arange(count), block(diverged))
    assert [f.kind for f in found] == ["exploding"] and 250 <= found[0].step <= 270
    assert found[0].evidence["ceiling"] == pytest.approx(2.6e7)
    # A divergence passes the plain ceiling while rising: the problem bench's
    # huge_learning_rate_to_nan (MSE, SGD 1.0) goes 2.5, 13, 1,478 (263x its reference, below
    # 1e3 x its first norm) and 5.8e12 before it overflows; the warning comes at 5.8e12.
    bench = np.array([2.46, 12.9, 1478.0, 5.8e12])[:, None] * np.array([[0.5, 0.6, 0.4, 1.0]])
    detector = regression(True)
    detector.loss_scale = 1.2
    assert summary(detector.update(np.arange(4), block(bench))) == [("exploding", 3, LAYERS)]
    slower = bench.copy()
    slower[2] = bench[1] * 30  # 30x: not rising past the plain ceiling
    slower[3] = bench[1] * 90
    detector = regression(True)
    detector.loss_scale = 0.3
    assert detector.update(np.arange(4), block(slower * 2)) == []


def test_growth_is_judged_against_the_runs_early_scale_when_most_samples_are_fit(rng):
    # Shaped on the corpus' calibration run healthy/256 (RMSprop, batch 1, trained): once
    # most samples are fit their gradients are near 1e-3, the window's median too, and a
    # sample the model still gets wrong (norm 177, its first norm was 25) is a 2e5x
    # "growth" over that median, twice in a row.
    count = 120
    norms = np.full(count, 1e-3) * 10 ** rng.normal(0, 0.3, size=count)
    norms[:8] = 25.0 * 10 ** rng.normal(0, 0.3, size=8)
    norms[0] = 25.4
    norms[100:102] = 177.0
    table = np.column_stack([norms / 2, norms / 2, norms / 2, norms])
    assert GradientDetector(LAYERS).update(np.arange(count), block(table)) == []
    # Measured from the window's median alone (a first norm as small as that median) it fires.
    small_start = table.copy()
    small_start[:8] = small_start[8:16]
    found = GradientDetector(LAYERS).update(np.arange(count), block(small_start))
    assert summary(found) == [("exploding", 101, LAYERS)]
    # A learning rate far too large blows up from the start: 1e3 x its first norm and more.
    blowing_up = table.copy()
    blowing_up[3:] = 25.0 * 10 ** np.linspace(4, 9, count - 3)[:, None] * np.array([[0.5, 0.5, 0.5, 1.0]])
    assert [f.kind for f in GradientDetector(LAYERS).update(np.arange(count), block(blowing_up))] == ["exploding"]


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
    detector = GradientDetector(LAYERS, patience=2, growth_window=2, vanishing_share=0.5)
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
    once = GradientDetector(LAYERS, patience=1, growth_window=2, vanishing_share=0.5)
    assert summary(once.update(np.arange(6), block(norms, nonfinite))) == [
        ("vanishing", 0, ("a",)),
        ("non_finite", 1, LAYERS),
    ]
    assert once.update(np.arange(6, 12), block(norms, nonfinite)) == []
    assert once.report_non_finite(12, {"loss": float("nan")}) is None
    # A remedy acts again: the count restarts after each finding; non-finite rows once a block.
    repeats = GradientDetector(
        LAYERS, patience=2, growth_window=2, vanishing_share=0.5, repeat=("vanishing", "non_finite")
    )
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

    def __init__(
        self, layers, patience=2, ratio=1e-3, floor=1e-7, ceiling=1e3, growth=1e3, window=20, share=0.8, scale=None
    ):
        self.layers, self.patience = layers, patience
        self.ratio, self.floor, self.ceiling, self.growth = ratio, floor, ceiling, growth
        self.share, self.scale = share, scale  # scale: a regression's sqrt(first loss), or None
        self.recent = collections.deque(maxlen=window)
        self.recent_vanishing = collections.deque(maxlen=window)  # per row: the set of vanishing layers
        self.window = window
        self.streak = {"vanishing": 0, "exploding": 0}
        self.reported = set()
        self.first_norm = self.first_loss = None

    def update(self, steps, blk):
        out = []
        for i, step in enumerate(steps):
            norms, share = blk["grad_norm"][i], blk["nonfinite_share"][i]
            weights = blk["weight_norm"][i]
            loss = blk["loss"][i] if "loss" in blk else np.nan
            bad = [n for n, s, w in zip(self.layers, share, weights) if s > 0 or not np.isfinite(w)]
            if bad or share[-1] > 0:
                if "non_finite" not in self.reported:
                    self.reported.add("non_finite")
                    out.append(("non_finite", int(step), tuple(bad)))
                continue
            layer, g = norms[:-1], norms[-1]
            if self.first_norm is None and np.isfinite(g) and g > 0:
                self.first_norm = g
            if self.first_loss is None and np.isfinite(loss):
                self.first_loss = loss
            fit = self.first_loss is not None and self.first_loss > 0 and loss < 1e-2 * self.first_loss
            low = set()
            if g < self.floor and not fit:
                low = set(self.layers)
            elif len(layer) >= 2 and layer[-1] > 0 and np.isfinite(layer).all():
                low = {n for n, v in zip(self.layers, layer[:-1]) if v / layer[-1] < self.ratio}
            self.recent_vanishing.append(low)
            # The same layer in `share` of a full window, from the first row on.
            counts = collections.Counter(n for row in self.recent_vanishing for n in row)
            vanishing = tuple(n for n in self.layers if n in low and counts[n] / self.window >= self.share - 1e-9)
            past = np.log10([p for p in self.recent if np.isfinite(p) and p > 0])
            self.recent.append(g)
            growth, allowed = 1.0, self.growth
            if past.size:
                center = np.median(past)
                growth = g / max(10**center, self.first_norm)
                allowed = max(self.growth, 10 ** (4 * 1.4826 * np.median(np.abs(past - center))))
            plain = ceiling = self.ceiling
            if self.scale is not None:
                plain = self.ceiling * max(1.0, self.scale)
                ceiling = self.ceiling * max(1.0, self.scale, self.first_norm or 0.0)
            rising = g > plain and growth > 100.0
            exploding = ()
            if not (g <= ceiling and growth <= allowed) or rising:
                top = np.max(layer)
                exploding = tuple(n for n, v in zip(self.layers, layer) if v >= 0.1 * top)
            for kind, layers in (("vanishing", vanishing), ("exploding", exploding)):
                self.streak[kind] = self.streak[kind] + 1 if layers else 0
                if layers and self.streak[kind] >= self.patience and kind not in self.reported:
                    self.reported.add(kind)
                    out.append((kind, int(step), layers))
        return out


def random_rows(rng, count, layers):
    """Norms spanning 1e-9..1e5, with zeros, infs, NaNs, NaN weights and non-finite shares sprinkled in;
    batch losses of either sign spanning 1e-4..10 in size, some of them NaN or (near) 0."""
    norms = 10.0 ** rng.uniform(-9, 5, size=(count, layers + 1))
    norms[rng.random(norms.shape) < 0.03] = 0.0
    norms[rng.random(norms.shape) < 0.02] = np.inf
    norms[rng.random(norms.shape) < 0.01] = np.nan
    nonfinite = np.where(rng.random(norms.shape) < 0.01, 0.5, 0.0)
    weights = np.where(rng.random(norms.shape) < 0.01, np.nan, 1.0)
    loss = 10.0 ** rng.uniform(-4, 1, size=count) * rng.choice([1.0, 1.0, 1.0, -1.0], size=count)
    loss[rng.random(count) < 0.05] = np.nan
    return block(norms, nonfinite, weights, loss)


@pytest.mark.parametrize("seed", range(40))
def test_vectorised_rules_equal_the_row_by_row_reference_for_any_split(seed):
    rng = np.random.default_rng(seed)
    layers = tuple(f"l{i}" for i in range(int(rng.integers(1, 5))))
    count = int(rng.integers(1, 60))
    data = random_rows(rng, count, len(layers))
    if seed % 3 == 0:
        del data["loss"]
    steps = np.arange(count) * 3
    settings = {
        "patience": int(rng.integers(1, 4)),
        "growth_window": int(rng.integers(1, 25)),
        "vanishing_share": float(rng.choice([0.3, 0.5, 0.8, 1.0])),
    }
    scale = float(10 ** rng.uniform(0, 3)) if seed % 2 else None
    reference = RowByRowReference(
        layers,
        patience=settings["patience"],
        window=settings["growth_window"],
        share=settings["vanishing_share"],
        scale=scale,
    )
    expected = reference.update(steps, data)
    detector = GradientDetector(layers, **settings)
    if scale is not None:
        detector.loss_scale, detector.scale_with_start = scale, True
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
