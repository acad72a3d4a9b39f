"""Checks before training: each fault and its healthy twin, numbers against NumPy."""

import keras
import numpy as np
import pytest

from keras_lossopt.callbacks.loss_fit import loss_family, output_activations
from keras_lossopt.callbacks.pretraining import check_training_setup

L = keras.layers
# Keras warns about a softmax over one unit itself (one of the faults checked here).
pytestmark = pytest.mark.filterwarnings("ignore:You are using a softmax over axis")
RNG = np.random.default_rng(0)
X = RNG.normal(size=(32, 8)).astype("float32")
LABELS = RNG.integers(0, 3, 32)
ONE_HOT = np.eye(3, dtype="float32")[LABELS]
PIXELS = np.round(np.abs(X) * 80).clip(0, 255).astype("float32")
LOGITS_CE = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def model(*layers, loss=LOGITS_CE, inputs=8):
    m = keras.Sequential([keras.Input((inputs,)), *layers])
    m.compile(optimizer="adam", loss=loss)
    return m


def huge(name):
    return L.Dense(16, activation="relu", kernel_initializer=keras.initializers.RandomNormal(stddev=1e10), name=name)


# (id, model factory, x, y, expected kind or None, the layers it must name)
TWINS = [
    ("raw_pixels", lambda: model(L.Dense(3, name="out")), PIXELS, LABELS, "input_scale", ("out",)),
    ("rescaled_pixels", lambda: model(L.Rescaling(1 / 255), L.Dense(3, name="out")), PIXELS, LABELS, None, ()),
    ("nan_inputs", lambda: model(L.Dense(3, name="out")), np.where(X > 2, np.nan, X), LABELS, "non_finite_data", ()),
    ("finite_inputs", lambda: model(L.Dense(3, name="out")), X, LABELS, None, ()),
    (
        "unscaled_targets",
        lambda: model(L.Dense(4, activation="relu"), L.Dense(1, name="out"), loss="mse"),
        X,
        RNG.normal(size=(32, 1)) * 1e4 + 5e4,
        "target_scale",
        (),
    ),
    (
        "standardized_targets",
        lambda: model(L.Dense(4, activation="relu"), L.Dense(1, name="out"), loss="mse"),
        X,
        RNG.normal(size=(32, 1)),
        None,
        (),
    ),
    (
        "mse_after_softmax",
        lambda: model(L.Dense(3, activation="softmax", name="out"), loss="mse"),
        X,
        ONE_HOT,
        "loss_mismatch",
        ("out",),
    ),
    (
        "ce_after_softmax",
        lambda: model(L.Dense(3, activation="softmax", name="out"), loss="categorical_crossentropy"),
        X,
        ONE_HOT,
        None,
        (),
    ),
    (
        "softmax_twice",
        lambda: model(
            L.Dense(3, activation="softmax", name="out"),
            L.Softmax(name="again"),
            loss="sparse_categorical_crossentropy",
        ),
        X,
        LABELS,
        "loss_mismatch",
        ("out", "again"),
    ),
    (
        "softmax_once_then_dropout",
        lambda: model(
            L.Dense(3, activation="softmax", name="out"), L.Dropout(0.1), loss="sparse_categorical_crossentropy"
        ),
        X,
        LABELS,
        None,
        (),
    ),
    (
        "softmax_over_one_unit",
        lambda: model(L.Dense(1, activation="softmax", name="out"), loss="binary_crossentropy"),
        X,
        (LABELS > 0).astype("float32")[:, None],
        "loss_mismatch",
        ("out",),
    ),
    (
        "sigmoid_over_one_unit",
        lambda: model(L.Dense(1, activation="sigmoid", name="out"), loss="binary_crossentropy"),
        X,
        (LABELS > 0).astype("float32")[:, None],
        None,
        (),
    ),
    (
        "ce_on_relu_output",
        lambda: model(L.Dense(3, activation="relu", name="out")),
        X,
        LABELS,
        "loss_mismatch",
        ("out",),
    ),
    ("ce_on_linear_output", lambda: model(L.Dense(3, name="out")), X, LABELS, None, ()),
    (
        "from_logits_after_softmax",
        lambda: model(L.Dense(3, activation="softmax", name="out")),
        X,
        LABELS,
        "loss_mismatch",
        ("out",),
    ),
    (
        "probabilities_expected_from_linear",
        lambda: model(L.Dense(3, name="out"), loss="sparse_categorical_crossentropy"),
        X,
        LABELS,
        "loss_mismatch",
        ("out",),
    ),
    (
        "overflow_at_init",
        lambda: model(huge("d0"), huge("d1"), huge("d2"), huge("d3"), L.Dense(3, name="out")),
        X,
        LABELS,
        "non_finite_forward",
        None,  # computed below with NumPy
    ),
    (
        "glorot_at_init",
        lambda: model(*(L.Dense(16, activation="relu") for _ in range(4)), L.Dense(3, name="out")),
        X,
        LABELS,
        None,
        (),
    ),
]


@pytest.mark.parametrize("case", TWINS, ids=[c[0] for c in TWINS])
def test_each_check_fires_on_its_fault_and_not_on_its_twin(case):
    _, build, x, y, kind, layers = case
    m = build()
    findings = check_training_setup(m, x, y)
    if kind is None:
        assert findings == [], [str(f) for f in findings]
        return
    assert [f.kind for f in findings] == [kind], [str(f) for f in findings]
    finding = findings[0]
    assert finding.step == -1 and finding.cause and finding.remedy
    if layers is None:
        layers = (first_nonfinite_layer_numpy(m, x),)
    assert finding.layers == layers


def first_nonfinite_layer_numpy(m, x):
    """The first Dense layer whose float32 output overflows, computed layer by layer in NumPy."""
    a = x.astype("float32")
    for layer in m.layers:
        kernel, bias = (np.asarray(v.numpy()) for v in layer.weights)
        with np.errstate(over="ignore", invalid="ignore"):
            z = a @ kernel + bias
            a = np.maximum(z, 0) if layer.get_config()["activation"] == "relu" else z
        if not np.isfinite(a).all():
            return layer.name
    raise AssertionError("no overflow")


def test_overflow_evidence_matches_numpy():
    m = model(huge("d0"), huge("d1"), huge("d2"), huge("d3"), L.Dense(3, name="out"))
    finding = check_training_setup(m, X, LABELS)[0]
    name = finding.layers[0]
    a = X.astype("float64")
    for layer in m.layers:
        if layer.name == name:
            break
        kernel, bias = (np.asarray(v.numpy(), np.float64) for v in layer.weights)
        a = np.maximum(a @ kernel + bias, 0)
    assert finding.evidence["max_abs_input"] == pytest.approx(np.abs(a).max(), rel=1e-4)
    assert finding.evidence["max_abs_weight"] == pytest.approx(np.abs(m.get_layer(name).kernel.numpy()).max())
    assert "cannot help" in finding.remedy


def test_scale_evidence_matches_numpy():
    m = model(L.Dense(3, name="out"))
    finding = check_training_setup(m, PIXELS, LABELS)[0]
    assert finding.evidence["input_rms"] == pytest.approx(np.sqrt(np.mean(PIXELS.astype(np.float64) ** 2)))
    assert "255" in finding.remedy
    targets = RNG.normal(size=(32, 1)) * 30 + 100
    regression = model(L.Dense(1, name="out"), loss="mae")
    finding = check_training_setup(regression, X, targets)[0]
    assert finding.evidence["target_mean"] == pytest.approx(targets.mean())
    assert finding.evidence["target_std"] == pytest.approx(targets.std())


def test_nan_evidence_counts_match_numpy():
    x = X.copy()
    x[0, 1], x[3, 1], x[5, 6] = np.nan, np.inf, np.nan
    finding = check_training_setup(model(L.Dense(3)), x, LABELS)[0]
    assert finding.evidence == {"x.nan_count": 2, "x.inf_count": 1, "x.size": x.size, "x.columns_affected": 2}


def test_functional_model_chain_and_first_weighted_layer():
    inputs = keras.Input((8,))
    scaled = L.Rescaling(1 / 255, name="scale")(inputs)
    hidden = L.Dense(4, activation="relu", name="hidden")(scaled)
    out = L.Activation("softmax", name="act")(L.Dense(3, activation="softmax", name="logits")(hidden))
    m = keras.Model(inputs, out)
    m.compile(loss="sparse_categorical_crossentropy")
    assert output_activations(m) == [("logits", "softmax"), ("act", "softmax")]
    findings = check_training_setup(m, PIXELS, LABELS)
    assert [(f.kind, f.layers) for f in findings] == [("loss_mismatch", ("logits", "act"))]


def test_uncompiled_model_checks_only_the_data_and_forward_pass():
    m = keras.Sequential([keras.Input((8,)), L.Dense(3, activation="relu")])
    assert [f.kind for f in check_training_setup(m, PIXELS, LABELS)] == ["input_scale"]


@pytest.mark.parametrize(
    "loss, expected",
    [
        ("mse", ("regression", False)),
        (keras.losses.Huber(), ("regression", None)),
        (keras.losses.BinaryCrossentropy(from_logits=True), ("sigmoid_ce", True)),
        ("sparse_categorical_crossentropy", ("softmax_ce", False)),
        (keras.losses.CategoricalFocalCrossentropy(), ("softmax_ce", False)),
        (keras.losses.CosineSimilarity(), ("other", None)),
    ],
)
def test_loss_family(loss, expected):
    assert loss_family(loss)[:2] == expected


def test_loss_family_of_keras_lossopt_losses():
    from keras_lossopt.losses import FocalLoss

    assert loss_family(FocalLoss(mode="multiclass", from_logits=True))[:2] == ("softmax_ce", True)
    assert loss_family(FocalLoss(mode="binary"))[:2] == ("sigmoid_ce", False)


def test_a_branching_functional_model_reads_its_output_layer():
    inputs = keras.Input((8,))
    left = L.Dense(4, activation="relu", name="left")(inputs)
    right = L.Dense(4, activation="relu", name="right")(inputs)
    out = L.Dense(3, activation="softmax", name="out")(L.Concatenate(name="join")([left, right]))
    m = keras.Model(inputs, out)
    m.compile(loss="mse")
    findings = check_training_setup(m, X, ONE_HOT)
    assert [(f.kind, f.layers) for f in findings] == [("loss_mismatch", ("out",))]
    prediction = keras.ops.convert_to_numpy(m(X))
    assert findings[0].evidence["output_max"] == pytest.approx(prediction.max(), rel=1e-6)


class Subclassed(keras.Model):
    """What users write: layers as attributes, no declared inputs or outputs."""

    def __init__(self, units, activation):
        super().__init__(name="net")
        self.hidden = L.Dense(16, activation="relu")
        self.out = L.Dense(units, activation=activation)

    def call(self, x):
        return self.out(self.hidden(x))


# (units, output activation, loss, targets, whether it is a loss mismatch): each fault next to its twin.
SUBCLASSED = [
    (3, "relu", "categorical_crossentropy", ONE_HOT, True),
    (3, "softmax", "categorical_crossentropy", ONE_HOT, False),
    (3, "softmax", "mse", ONE_HOT, True),
    (3, None, "mse", ONE_HOT, False),
    (1, None, "binary_crossentropy", (LABELS > 0).astype("float32"), True),
    (1, "sigmoid", "binary_crossentropy", (LABELS > 0).astype("float32"), False),
    (3, "softmax", LOGITS_CE, LABELS, True),
    (3, None, LOGITS_CE, LABELS, False),
]


@pytest.mark.parametrize("units, activation, loss, y, mismatch", SUBCLASSED)
def test_a_subclassed_model_has_its_output_read_from_its_values(units, activation, loss, y, mismatch):
    net = Subclassed(units, activation)
    net.compile(optimizer="adam", loss=loss)
    net(X[:1])
    findings = check_training_setup(net, X, y)
    kinds = [f.kind for f in findings]
    assert ("loss_mismatch" in kinds) == mismatch, kinds
    if mismatch:
        found = next(f for f in findings if f.kind == "loss_mismatch")
        assert found.layers == ("net",) and found.evidence["inferred_from_values"] == 1.0


def test_training_diagnostics_with_targets_runs_on_a_subclassed_model_in_fit():
    # It raised AttributeError (a subclassed model has no `outputs`) at the start of fit.
    from keras_lossopt.callbacks import TrainingDiagnostics

    keras.utils.set_random_seed(0)
    net = Subclassed(3, "softmax")
    net.compile(optimizer="adam", loss="mse")
    diagnostics = TrainingDiagnostics(probe_x=X, probe_y=ONE_HOT)
    with pytest.warns(UserWarning, match="loss_mismatch|mean_squared_error|mse"):
        net.fit(X, ONE_HOT, epochs=1, batch_size=8, verbose=0, callbacks=[diagnostics])
    assert [f.kind for f in diagnostics.findings if f.severity == "problem"][:1] == ["loss_mismatch"]


@pytest.mark.parametrize(
    "values, expected",
    [
        (np.array([[0.2, 0.3, 0.5], [0.1, 0.1, 0.8]]), "softmax"),
        (np.array([[0.2, 0.9, 0.5], [0.1, 0.1, 0.8]]), "sigmoid"),
        (np.array([[0.0, 1.7], [0.3, 0.0]]), "relu"),
        (np.array([[-0.2], [0.4]]), "linear"),
        (np.array([[0.0], [0.0]]), None),  # all zero: a dead ReLU or a zero output, nothing to tell
        (np.array([[1.5], [2.0]]), None),  # positive and above 1: softplus, exp or a linear unit
        (np.zeros((0, 3)), None),
    ],
)
def test_output_kind_from_values(values, expected):
    from keras_lossopt.callbacks.loss_fit import output_kind_from_values

    assert output_kind_from_values(values) == expected
