"""choose_loss and the candidate tables: conditional hyperparameters, every candidate builds and trains."""

import keras
import keras_tuner
import numpy as np
import pytest

from keras_lossopt import losses
from keras_lossopt.tuning import (
    DEFAULT_CANDIDATES,
    LOSS_CANDIDATES,
    LossCandidate,
    Param,
    build_loss,
    choose_loss,
    resolve_candidates,
)
from keras_lossopt.tuning.search_space import loss_hyperparameter_name

NUM_CLASSES = 3


def task_batch(task, rng):
    """Targets and logits of the shapes each task's model produces."""
    if task == "binary":
        return rng.integers(0, 2, size=(8, 1)).astype("float32"), rng.normal(size=(8, 1)).astype("float32")
    if task == "multiclass":
        return rng.integers(0, NUM_CLASSES, size=(8,)), rng.normal(size=(8, NUM_CLASSES)).astype("float32")
    if task == "multilabel":
        return (
            rng.integers(0, 2, size=(8, NUM_CLASSES)).astype("float32"),
            rng.normal(size=(8, NUM_CLASSES)).astype("float32"),
        )
    return rng.integers(0, NUM_CLASSES, size=(2, 4, 4)), rng.normal(size=(2, 4, 4, NUM_CLASSES)).astype("float32")


def class_counts(task):
    return [30.0, 5.0] if task == "binary" else [30.0, 10.0, 2.0]


def config_value(loss, argument):
    config = loss.get_config()
    if argument.startswith("loss."):
        config = config["loss"]["config"]
        argument = argument[len("loss.") :]
    return config[argument]


ALL_CANDIDATES = [(task, name) for task, table in LOSS_CANDIDATES.items() for name in table]


@pytest.mark.parametrize(("task", "name"), ALL_CANDIDATES, ids=[f"{t}-{n}" for t, n in ALL_CANDIDATES])
def test_every_candidate_builds_with_its_range_ends_and_gives_a_finite_loss(task, name, rng):
    candidate = resolve_candidates(task, [name])[0]
    y_true, logits = task_batch(task, rng)
    settings = [{}]
    for end in (0, -1):
        settings.append(
            {p.argument: (p.values[end] if p.kind == "choice" else (p.low, p.high)[end]) for p in candidate.params}
        )
    for values in settings:
        loss = build_loss(candidate, values, from_logits=True, class_counts=class_counts(task))
        for argument, value in values.items():
            assert config_value(loss, argument) == pytest.approx(value), argument
        value = float(loss(y_true, logits))
        assert np.isfinite(value), (values, value)
    # The loss travels through its config, as the search command's best-loss JSON does.
    restored = losses.get(losses.serialize(loss))
    assert float(restored(y_true, logits)) == pytest.approx(value, rel=1e-6)


# `crossentropy` builds the task's Keras cross-entropy (binary or sparse categorical), while
# `losses.get("crossentropy")` is FocalLoss(gamma=0); the same loss, checked by value below.
NAMED_LIKE_THE_REGISTRY = [(task, name) for task, name in ALL_CANDIDATES if name != "crossentropy"]


@pytest.mark.parametrize(
    ("task", "name"), NAMED_LIKE_THE_REGISTRY, ids=[f"{t}-{n}" for t, n in NAMED_LIKE_THE_REGISTRY]
)
def test_candidate_names_are_the_registry_names_of_their_losses(task, name):
    candidate = LOSS_CANDIDATES[task][name]
    counts = {"class_counts": class_counts(task)} if candidate.needs_class_counts else {}
    assert type(losses.get(name, **counts)) is type(build_loss(candidate, **counts))


@pytest.mark.parametrize("task", [t for t in LOSS_CANDIDATES if "crossentropy" in LOSS_CANDIDATES[t]])
def test_the_crossentropy_candidate_is_the_crossentropy_of_the_registry(task, rng):
    y_true, logits = task_batch(task, rng)
    mode = "multiclass" if task == "segmentation" else task
    by_name = losses.get("crossentropy", mode=mode, from_logits=True)
    candidate = build_loss(LOSS_CANDIDATES[task]["crossentropy"], from_logits=True)
    assert float(by_name(y_true, logits)) == pytest.approx(float(candidate(y_true, logits)), rel=1e-5)


@pytest.mark.parametrize(
    ("typo", "meant"),
    [
        ("focl", "focal"),
        ("poly", "poly1"),
        ("class_balanced_foca", "class_balanced_focal"),
        ("crossentropyy", "crossentropy"),
    ],
)
def test_the_search_and_the_registry_suggest_the_same_name(typo, meant):
    with pytest.raises(ValueError, match=f"Did you mean '{meant}'"):
        resolve_candidates("multiclass", [typo])
    if typo != "poly":  # "poly" is itself a registry alias of PolyLoss
        with pytest.raises(ValueError, match=f"Did you mean '{meant}'"):
            losses.get(typo)


@pytest.mark.parametrize("task", sorted(DEFAULT_CANDIDATES))
def test_default_candidates_exist_for_every_task(task):
    assert [c.name for c in resolve_candidates(task)] == list(DEFAULT_CANDIDATES[task])


def test_conditional_hyperparameters_are_active_only_for_their_loss():
    hp = keras_tuner.HyperParameters()
    choose_loss(hp, "multiclass", ["crossentropy", "focal", "poly1"])
    # Every candidate's parameters are declared on the first build, each under its condition.
    conditions = {h.name: [(c.name, list(c.values)) for c in h.conditions] for h in hp.space}
    assert conditions["loss"] == []
    assert conditions["focal/gamma"] == [("loss", ["focal"])]
    assert conditions["poly1/epsilon"] == [("loss", ["poly1"])]
    for chosen, expected_type in [("crossentropy", "SparseCategoricalCrossentropy"), ("poly1", "PolyLoss")]:
        hp.values["loss"] = chosen
        hp.ensure_active_values()
        loss = choose_loss(hp, "multiclass", ["crossentropy", "focal", "poly1"])
        assert type(loss).__name__ == expected_type
        assert hp.is_active("focal/gamma") is False
        assert hp.is_active("poly1/epsilon") is (chosen == "poly1")
        with pytest.raises(ValueError, match="inactive"):
            hp.get("focal/gamma")


def test_chosen_parameter_values_reach_the_loss():
    hp = keras_tuner.HyperParameters()
    hp.Choice("loss", ["crossentropy", "focal"])
    hp.values["loss"] = "focal"
    with hp.conditional_scope("loss", ["focal"]):
        hp.Float("focal/gamma", 0.5, 4.0)
    hp.values["focal/gamma"] = 3.25
    loss = choose_loss(hp, "multiclass", ["crossentropy", "focal"])
    assert isinstance(loss, losses.FocalLoss)
    assert loss.gamma == 3.25
    assert loss.from_logits is True


def test_class_balanced_candidate_routes_gamma_to_the_inner_loss():
    hp = keras_tuner.HyperParameters()
    loss = choose_loss(hp, "multiclass", ["class_balanced_focal"], class_counts=[50, 5, 1], from_logits=False)
    assert loss_hyperparameter_name("class_balanced_focal", "loss.gamma") in hp.values
    assert config_value(loss, "loss.gamma") == 2.0
    assert config_value(loss, "loss.from_logits") is False
    assert loss.get_config()["beta"] == 0.999


def test_unknown_missing_and_underspecified_candidates_fail_clearly():
    with pytest.raises(ValueError, match=r"Unknown loss candidate 'focl'.*Did you mean 'focal'"):
        resolve_candidates("multiclass", ["focl"])
    with pytest.raises(ValueError, match=r"'mystery' \(loss 'no_such_loss_anywhere'\) cannot be built: Unknown loss"):
        resolve_candidates("multiclass", [LossCandidate("mystery", "no_such_loss_anywhere")])
    with pytest.raises(ValueError, match="needs the training class counts"):
        choose_loss(keras_tuner.HyperParameters(), "multiclass", ["class_balanced_focal"])
    with pytest.raises(ValueError, match="task"):
        resolve_candidates("regression")
    with pytest.raises(ValueError, match="twice"):
        resolve_candidates("multiclass", ["focal", "focal"])
    with pytest.raises(ValueError, match="low"):
        Param("gamma", low=2.0, high=1.0)


def test_a_custom_candidate_joins_the_search():
    custom = LossCandidate("smooth_ce", "focal", {"gamma": 0.0}, (Param("label_smoothing", low=0.0, high=0.3),))
    hp = keras_tuner.HyperParameters()
    hp.Choice("loss", ["smooth_ce"])
    loss = choose_loss(hp, "multiclass", [custom])
    assert isinstance(loss, losses.FocalLoss)
    assert loss.gamma == 0.0
    assert hp.is_active("smooth_ce/label_smoothing")


def test_chosen_loss_trains_a_model(rng):
    x = rng.normal(size=(32, 4)).astype("float32")
    y = rng.integers(0, NUM_CLASSES, size=32)
    hp = keras_tuner.HyperParameters()
    loss = choose_loss(hp, "multiclass", ["focal"])
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(NUM_CLASSES)])
    model.compile(optimizer="adam", loss=loss)
    history = model.fit(x, y, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
