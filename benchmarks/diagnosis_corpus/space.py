"""The space the corpus draws from: healthy runs, documented fault families, ported peer cases.

A `RunSpec` is a plain, JSON-serializable description of one training run. Healthy specs
are drawn at random (seeded) from a space wider than any one example; a faulty spec is a
healthy-style draw with one fault planted, labelled by the fault family and the cause
(a `keras_lossopt.callbacks.CAUSE_KEYS` key, or a check-before-training kind, which is its
own cause) that a right diagnosis ranks first. `peer_cases()` are the AUTOTRAINER and
DeepDiagnosis problem cases ported to Keras 3, each naming its source.

Each spec's `seed` draws its configuration and seeds its training; the corpus is split by
seed parity into a calibration half (even) and a held-out half (odd).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from benchmarks.diagnosis_corpus.data import TASKS

__all__ = [
    "FAULT_FAMILIES",
    "RunSpec",
    "corpus_specs",
    "current_spec",
    "draw_faulty",
    "draw_healthy",
    "peer_cases",
    "split_of",
]

#: Total optimizer steps a run may take (epochs x steps per epoch): keeps a run to seconds
#: (a run's time is mostly its fixed cost: tracing, and per epoch validation and probes).
MAX_STEPS = 400
#: The fewest training samples a run gets (batch size 1: 128 steps per epoch).
MIN_TRAIN = 128

#: Fault family -> the cause a right diagnosis ranks first.
FAULT_FAMILIES = {
    "wrong_output_activation": "loss_mismatch",
    "wrong_loss": "loss_mismatch",
    "unnormalized_inputs": "input_scale",
    "learning_rate_too_large": "learning_rate_high",
    "learning_rate_too_small": "learning_rate_low",
    "bad_initialization": "initial_weight_scale",
    "dying_relu": "negative_bias",
    "deep_sigmoid": "saturating_activations",
    "nan_in_data": "non_finite_data",
    "shuffled_labels": "shuffled_labels",
}


@dataclasses.dataclass(frozen=True)
class RunSpec:
    id: str
    seed: int
    group: str  # "healthy" | "faulty"
    family: str  # "healthy", a FAULT_FAMILIES key, or "peer"
    planted_cause: str | None
    task: str
    n_train: int
    architecture: str  # "mlp" | "cnn" | "lstm" | "gru"
    depth: int
    width: int
    activation: str
    batchnorm: bool
    dropout: float
    kernel_init: str
    init_std: float | None  # a RandomNormal(stddev) kernel initializer instead of kernel_init
    hidden_bias: float
    dead_layers: tuple[int, ...]
    dead_bias: float
    output: str  # see models._output_activation
    loss: str  # "sparse_ce_logits" | "sparse_ce" | "categorical_ce" | "binary_ce" | "mse" | "mae" | "huber" | ...
    optimizer: str  # "sgd" | "adam" | "rmsprop"
    learning_rate: float
    momentum: float
    batch_size: int
    epochs: int
    input_scale: float = 1.0
    nan_share: float = 0.0
    shuffle_labels: bool = False
    source: str = ""

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["dead_layers"] = list(self.dead_layers)
        return out

    @classmethod
    def from_dict(cls, d: dict) -> RunSpec:
        d = dict(d)
        d["dead_layers"] = tuple(d.get("dead_layers", ()))
        return cls(**d)


def split_of(spec: RunSpec) -> str:
    """ "calibration" for even seeds, "held-out" for odd ones; the peer cases are "peer"."""
    if spec.family == "peer":
        return "peer"
    return "calibration" if spec.seed % 2 == 0 else "held-out"


def _loguniform(rng, low, high) -> float:
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


_AVAILABLE = {
    "digits": 1669,
    "digits_images": 1669,
    "breast_cancer": 441,
    "mnist": 4872,
    "mnist_images": 4872,
}


def _size(rng, task, batch_size, epochs) -> tuple[int, int]:
    """(n_train, epochs) within MAX_STEPS steps: fewer epochs first (not below 5), then fewer
    samples (not below MIN_TRAIN), so that small batches still see enough data to train."""
    available = _AVAILABLE.get(task, 1500)
    n_train = int(min(available, rng.integers(300, 1200)))
    n_train = max(n_train, min(available, batch_size))
    steps = -(-n_train // batch_size)
    if steps * epochs > MAX_STEPS:
        epochs = max(5, MAX_STEPS // steps)
    if steps * epochs > MAX_STEPS:
        n_train = max(MIN_TRAIN, batch_size * (MAX_STEPS // epochs))
    return n_train, epochs


def draw_healthy(seed: int, family: str = "healthy") -> RunSpec:
    """A run drawn from the healthy space (it must still be checked to train)."""
    rng = np.random.default_rng(seed)
    task = str(rng.choice(list(TASKS)[:13]))  # the AUTOTRAINER tasks are for the peer cases
    kind, classes, shape = TASKS[task]
    if shape == "image":
        architecture = "cnn"
    elif shape == "sequence":
        architecture = str(rng.choice(["lstm", "gru"]))
    else:
        architecture = "mlp"
    activation = str(rng.choice(["relu", "tanh", "sigmoid", "selu", "gelu"]))
    depth = int(rng.integers(1, 9))
    if activation == "sigmoid":
        depth = min(depth, 3)  # deeper plain sigmoid stacks are the deep_sigmoid fault
    optimizer = str(rng.choice(["sgd", "sgd_momentum", "adam", "rmsprop"]))
    if optimizer.startswith("sgd"):
        lr = _loguniform(rng, 1e-3, 3.0)
    else:
        lr = _loguniform(rng, 1e-4, 1e-2)
    if task == "regression_thousands":
        # Targets in natural units: the user lowers SGD's rate until the run stops diverging
        # (1e-7..3e-6 here: errors of 1,000s make 1e-5 diverge); adaptive optimizers at
        # their usual rates cannot reach targets in the thousands within a few hundred steps.
        optimizer = str(rng.choice(["sgd", "sgd_momentum"]))
        lr = _loguniform(rng, 1e-7, 3e-6)
    batch_size = int(rng.choice([1, 2, 4, 8, 16, 32, 64, 128, 256, 512]))
    epochs = int(rng.integers(5, 51))
    n_train, epochs = _size(rng, task, batch_size, epochs)
    if kind == "regression":
        output, loss = "linear", str(rng.choice(["mse", "mse", "mae", "huber"]))
    elif classes == 2 and rng.random() < 0.5:
        output, loss = "sigmoid_binary", "binary_ce"
    else:
        output, loss = [("logits", "sparse_ce_logits"), ("softmax", "sparse_ce"), ("softmax_onehot", "categorical_ce")][
            int(rng.integers(3))
        ]
    init = "he_normal" if activation in ("relu", "gelu") and rng.random() < 0.5 else "glorot_uniform"
    if activation == "selu" and rng.random() < 0.5:
        init = "lecun_normal"
    return RunSpec(
        id=f"{family}/{seed}",
        seed=seed,
        group="healthy" if family == "healthy" else "faulty",
        family=family,
        planted_cause=None,
        task=task,
        n_train=n_train,
        architecture=architecture,
        depth=depth,
        width=int(rng.choice([16, 32, 64])),
        activation=activation,
        # BatchNorm at batch size 1 or 2 is a misuse, not a healthy setup: at 1 a Dense
        # layer's batch statistics map every feature to 0 (no gradient reaches the layers
        # below; PyTorch refuses it), at 2 to +-1. Decided after three of the four healthy runs
        # flagged in the first held-out half were such runs (docs/benchmarks.md says so).
        batchnorm=bool(rng.random() < 0.3) and batch_size > 2,
        dropout=float(rng.choice([0.0, 0.0, 0.1, 0.3])),
        kernel_init=init,
        init_std=None,
        hidden_bias=0.0,
        dead_layers=(),
        dead_bias=0.0,
        output=output,
        loss=loss,
        optimizer="sgd" if optimizer.startswith("sgd") else optimizer,
        learning_rate=lr,
        momentum=0.9 if optimizer == "sgd_momentum" else 0.0,
        batch_size=batch_size,
        epochs=epochs,
    )


def draw_faulty(seed: int, family: str) -> RunSpec:
    """A healthy-style draw with the fault `family` planted."""
    rng = np.random.default_rng(seed + 7_919)  # the fault's own choices, apart from the base draw
    base = draw_healthy(seed, family)
    change: dict = {"planted_cause": FAULT_FAMILIES[family]}
    kind = TASKS[base.task][0]
    if family in ("wrong_output_activation", "wrong_loss") and kind == "regression":
        base = dataclasses.replace(base, task=str(rng.choice(["digits", "synthetic_easy", "breast_cancer"])))
        base = dataclasses.replace(base, architecture="mlp", output="logits", loss="sparse_ce_logits")
    classes = TASKS[base.task][1]
    if family == "wrong_output_activation":
        choices = [("relu", "categorical_ce"), ("sigmoid_multiclass", "categorical_ce"), ("relu", "sparse_ce")]
        if classes == 2:
            choices += [("softmax_one_unit", "binary_ce"), ("relu_binary", "binary_ce")]
        change["output"], change["loss"] = choices[int(rng.integers(len(choices)))]
    elif family == "wrong_loss":
        choices = [("softmax_onehot", "mse"), ("softmax", "sparse_ce_logits"), ("softmax_onehot", "binary_ce_onehot")]
        change["output"], change["loss"] = choices[int(rng.integers(len(choices)))]
    elif family == "unnormalized_inputs":
        change["input_scale"] = 255.0 if base.task.startswith(("digits", "mnist")) else _loguniform(rng, 300, 3000)
        change["batchnorm"] = False
    elif family == "learning_rate_too_large":
        change["optimizer"] = str(rng.choice(["sgd", "adam", "rmsprop"]))
        change["learning_rate"] = (
            _loguniform(rng, 20, 300) if change["optimizer"] == "sgd" else _loguniform(rng, 0.5, 10)
        )
        change["momentum"] = 0.0
        change["batchnorm"] = False
    elif family == "learning_rate_too_small":
        change["optimizer"] = str(rng.choice(["sgd", "adam", "rmsprop"]))
        change["learning_rate"] = (
            _loguniform(rng, 1e-7, 3e-6) if change["optimizer"] == "sgd" else _loguniform(rng, 1e-8, 3e-7)
        )
        change["momentum"] = 0.0
    elif family == "bad_initialization":
        change["init_std"] = _loguniform(rng, 5.0, 50.0) if rng.random() < 0.6 else 1e-4
        change["batchnorm"] = False
        if change["init_std"] < 1:
            change["depth"] = max(base.depth, 4)
            change["architecture"] = "mlp"
            change["task"] = base.task.replace("_images", "") if base.task != "sequences" else "digits"
    elif family == "dying_relu":
        depth = max(base.depth, 2)
        change.update(
            architecture="mlp",
            task=base.task.replace("_images", "") if base.task != "sequences" else "digits",
            activation="relu",
            depth=depth,
            batchnorm=False,
            dead_layers=tuple(range(depth)) if rng.random() < 0.5 else (int(rng.integers(depth)),),
            dead_bias=-float(rng.uniform(10, 40)),
        )
    elif family == "deep_sigmoid":
        change.update(
            architecture="mlp",
            task=base.task.replace("_images", "") if base.task != "sequences" else "digits",
            activation="sigmoid",
            depth=int(rng.integers(8, 13)),
            batchnorm=False,
            kernel_init="glorot_uniform",
            optimizer="sgd",
            learning_rate=_loguniform(rng, 1e-3, 0.1),
            momentum=0.0,
        )
    elif family == "nan_in_data":
        change["nan_share"] = _loguniform(rng, 0.01, 0.1)
    elif family == "shuffled_labels":
        change["shuffle_labels"] = True
    else:
        raise ValueError(f"unknown fault family {family!r}; choose from {sorted(FAULT_FAMILIES)}")
    spec = dataclasses.replace(base, **change)
    n_train, epochs = _size(np.random.default_rng(seed), spec.task, spec.batch_size, spec.epochs)
    return dataclasses.replace(spec, n_train=n_train, epochs=epochs)


def corpus_specs(healthy: int = 340, faulty: int = 160, start: int = 0) -> list[RunSpec]:
    """`healthy` healthy draws and `faulty` faulty ones (families in turn), seeds from `start`.

    Healthy draws that do not train are dropped at analysis time, so draw more than the
    300 the corpus needs.
    """
    specs = [draw_healthy(start + i) for i in range(healthy)]
    families = list(FAULT_FAMILIES)
    for j in range(faulty):
        # Each family takes two consecutive seeds in turn (one even, one odd), so both
        # halves hold every family equally.
        family = families[(j // 2) % len(families)]
        specs.append(draw_faulty(start + 100_000 + j, family))
    return specs


def _peer(name: str, source: str, group: str, cause: str | None, **kw) -> RunSpec:
    base = dict(
        id=f"peer/{name}",
        seed=0,
        group=group,
        family="peer",
        planted_cause=cause,
        task="circle",
        n_train=400,
        architecture="mlp",
        depth=3,
        width=5,
        activation="relu",
        batchnorm=False,
        dropout=0.0,
        kernel_init="he_uniform",
        init_std=None,
        hidden_bias=0.0,
        dead_layers=(),
        dead_bias=0.0,
        output="sigmoid_binary",
        loss="binary_ce",
        optimizer="adam",
        learning_rate=1e-3,
        momentum=0.0,
        batch_size=32,
        epochs=10,
        source=source,
    )
    base.update(kw)
    return RunSpec(**base)


_AT = "shiningrain/AUTOTRAINER"
_DD = "DeepDiagnosis/ICSE2022"


def peer_cases() -> list[RunSpec]:
    """The 18 ported peer runs: 12 faulty, 6 healthy (AUTOTRAINER's and DeepDiagnosis' cases, Keras 3)."""
    circle_models = f"{_DD}: AUTOTRAINER Model Code/Models_Circle.py"
    return [
        # Faulty.
        _peer(
            "circle_exponential_deep",
            f"{circle_models} (model_0ae2cd88: 8 x Dense(5) + exponential, VarianceScaling(2.0))",
            "faulty",
            "initial_weight_scale",
            depth=8,
            activation="exponential",
            kernel_init="variance_scaling_2",
        ),
        _peer(
            "circle_sigmoid_deep",
            f"{circle_models} (model_5ab0aeda: 11 x Dense(5) + sigmoid)",
            "faulty",
            "saturating_activations",
            depth=11,
            activation="sigmoid",
            kernel_init="variance_scaling_2",
            optimizer="sgd",
            learning_rate=0.01,
        ),
        _peer(
            "circle_relu_random_uniform",
            f"{circle_models} (model_8de47bdc: 8 x Dense(5, RandomUniform) + relu)",
            "faulty",
            "initial_weight_scale",
            depth=8,
            kernel_init="random_uniform",
            optimizer="sgd",
            learning_rate=0.01,
        ),
        _peer(
            "blob_relu_output",
            f"{_AT}: AutoTrainer/demo_case/Improper_Activation_case/demo_activation.py (4 x Dense(50) relu, "
            "Dense(3, relu) output, categorical_crossentropy, Adam 1e-4, batch 256)",
            "faulty",
            "loss_mismatch",
            task="blob",
            depth=4,
            width=50,
            output="relu",
            loss="categorical_ce",
            learning_rate=1e-4,
            batch_size=256,
            epochs=30,
        ),
        _peer(
            "blob_mse_softmax",
            f"{_AT}: AutoTrainer/demo_case/Improper_Activation_case/demo_activation.py, its commented-out "
            "'mean_squared_error' loss on a softmax output",
            "faulty",
            "loss_mismatch",
            task="blob",
            depth=4,
            width=50,
            output="softmax_onehot",
            loss="mse",
            batch_size=256,
            epochs=30,
        ),
        _peer(
            "circle_oscillating_sgd",
            f"{_AT}: AutoTrainer/demo_case/Oscillating_Loss_Case (training_unstable: a large SGD step; "
            "repaired by unstable_adam)",
            "faulty",
            "learning_rate_high",
            depth=2,
            width=50,
            activation="tanh",
            optimizer="sgd",
            learning_rate=30.0,
        ),
        _peer(
            "circle_gradient_vanish",
            f"{_AT}: AutoTrainer/demo_case/Gradient_Vanish_Case (gradient_vanish on circle; repaired by "
            "vanish_selu / vanish_bn / vanish_relu)",
            "faulty",
            "saturating_activations",
            depth=10,
            width=50,
            activation="sigmoid",
            kernel_init="glorot_uniform",
            optimizer="sgd",
            learning_rate=0.01,
        ),
        _peer(
            "relu_negative_inputs_dying",
            f"{_AT}: AutoTrainer/data/simplednn.py method='relu' (uniform(-1, 0) inputs) with "
            f"MOTIVATING EXAMPLE/31880720 of {_DD} (dying_relu, repaired by relu_bn / relu_initial)",
            "faulty",
            "negative_bias",
            task="blob",
            depth=4,
            width=50,
            dead_layers=(0, 1, 2, 3),
            dead_bias=-20.0,
            output="softmax",
            loss="sparse_ce",
        ),
        _peer(
            "reg20_sgd_explode",
            f"{_AT}: AutoTrainer/data/simplednn.py method='reg' (make_regression, 20 features) with SGD 0.1 "
            "(gradient_explode; repaired by explode_selu in DeepDiagnosis' 'difference threshold' runs)",
            "faulty",
            "learning_rate_high",
            task="reg20",
            n_train=500,
            depth=2,
            width=50,
            output="linear",
            loss="mse",
            optimizer="sgd",
            learning_rate=0.1,
        ),
        _peer(
            "blob_unscaled_inputs",
            f"{_DD}: AUTOTRAINER Model Code/Models_Blob.py with its inputs x 1000 (DeepDiagnosis' "
            "'normalize the data' fix)",
            "faulty",
            "input_scale",
            task="blob",
            depth=3,
            width=50,
            activation="tanh",
            output="softmax",
            loss="sparse_ce",
            input_scale=1000.0,
            optimizer="sgd",
            learning_rate=0.01,
        ),
        _peer(
            "blob_adam_1e-6",
            f"{_DD}: AUTOTRAINER Model Code/Models_Blob.py trained with Adam at 1e-6 (DeepDiagnosis' "
            "'increase the learning rate' fix)",
            "faulty",
            "learning_rate_low",
            task="blob",
            depth=3,
            width=50,
            output="softmax",
            loss="sparse_ce",
            learning_rate=1e-6,
            epochs=20,
        ),
        _peer(
            "circle_nan_inputs",
            f"{_AT}: AutoTrainer/demo_case/Data_Issue_case/demo_data.py (a data issue: NaN entries in the "
            "training inputs)",
            "faulty",
            "non_finite_data",
            depth=3,
            width=50,
            nan_share=0.02,
        ),
        # Healthy.
        _peer("circle_relu_he", f"{circle_models} (model_8e28bdef, 3 of its relu layers)", "healthy", None),
        _peer(
            "blob_softmax_adam",
            f"{_AT}: demo_activation.py repaired (softmax output)",
            "healthy",
            None,
            task="blob",
            depth=4,
            width=50,
            output="softmax_onehot",
            loss="categorical_ce",
            batch_size=256,
            epochs=30,
            learning_rate=1e-2,
        ),
        _peer(
            "circle_selu_repaired",
            f"{_AT}: Gradient_Vanish_Case repaired by vanish_selu",
            "healthy",
            None,
            depth=6,
            width=50,
            activation="selu",
            kernel_init="lecun_normal",
        ),
        _peer(
            "circle_adam_repaired",
            f"{_AT}: Oscillating_Loss_Case repaired by unstable_adam",
            "healthy",
            None,
            depth=2,
            width=50,
            activation="tanh",
            learning_rate=1e-2,
        ),
        _peer(
            "reg20_adam",
            f"{_AT}: simplednn method='reg' with Adam 1e-2 (targets in their natural units)",
            "healthy",
            None,
            task="reg20",
            n_train=500,
            depth=2,
            width=50,
            output="linear",
            loss="mse",
            learning_rate=1e-2,
            epochs=30,
        ),
        _peer(
            "blob_sgd_batch1",
            f"{_DD}: Models_Blob.py trained with SGD 0.01 at batch size 1",
            "healthy",
            None,
            task="blob",
            n_train=200,
            depth=2,
            width=50,
            output="softmax",
            loss="sparse_ce",
            optimizer="sgd",
            learning_rate=0.01,
            batch_size=1,
            epochs=5,
        ),
    ]


def current_spec(run_id: str) -> RunSpec | None:
    """The spec the space draws today for `run_id` ("healthy/12", "dying_relu/100013",
    "peer/<name>"), None for an id it no longer has: a cached record whose spec differs was
    made from an older space and is run again."""
    family, _, key = run_id.partition("/")
    if family == "peer":
        return next((s for s in peer_cases() if s.id == run_id), None)
    if not key.isdigit():
        return None
    if family == "healthy":
        return draw_healthy(int(key))
    if family in FAULT_FAMILIES:
        return draw_faulty(int(key), family)
    return None
