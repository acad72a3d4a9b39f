import json

import keras
import numpy as np
import pytest

from keras_lossopt import losses


def test_aliases_build_configured_losses_with_overrides():
    focal = losses.get("focal", gamma=1.0, from_logits=True)
    assert isinstance(focal, losses.FocalLoss) and focal.gamma == 1.0 and focal.from_logits
    assert losses.get("binary-focal").mode == "binary"
    assert losses.get("Multilabel_Focal").mode == "multilabel"


# Losses built from class statistics need them; everything else builds from its name alone.
REQUIRED = {"class_counts": [40, 10, 5]}


def test_every_alias_builds_a_registered_loss_that_round_trips():
    for alias in losses.registry.available_aliases():
        try:
            loss = losses.get(alias)
        except ValueError as error:
            assert "class_counts" in str(error), alias
            extra = {"loss": "focal"} if "'loss'" in str(error) else {}
            loss = losses.get(alias, **REQUIRED, **extra)
        assert isinstance(loss, keras.losses.Loss), alias
        config = json.loads(json.dumps(losses.serialize(loss)))
        assert config["module"] is not None
        assert type(losses.get(config)) is type(loss), alias


def test_config_dicts_and_instances():
    loss = losses.FocalLoss(gamma=3.0, alpha=[0.2, 0.8], mode="multilabel")
    restored = losses.get(losses.serialize(loss))
    assert restored.get_config() == loss.get_config()
    assert losses.get({"name": "focal", "config": {"gamma": 0.5}}).gamma == 0.5
    assert losses.get(loss) is loss
    assert losses.get(losses.serialize(loss), gamma=1.0).gamma == 1.0


def test_class_names_and_keras_losses():
    assert isinstance(losses.get("FocalLoss", gamma=1.0), losses.FocalLoss)
    sparse_ce = losses.get("SparseCategoricalCrossentropy", from_logits=True)
    assert isinstance(sparse_ce, keras.losses.SparseCategoricalCrossentropy) and sparse_ce.get_config()["from_logits"]
    by_function_name = losses.get("sparse_categorical_crossentropy", from_logits=True)
    assert isinstance(by_function_name, keras.losses.SparseCategoricalCrossentropy)
    labels, logits = np.array([0, 1]), np.array([[2.0, -1.0], [0.0, 1.0]], "float32")
    np.testing.assert_allclose(
        float(by_function_name(labels, logits)),
        float(keras.losses.SparseCategoricalCrossentropy(from_logits=True)(labels, logits)),
    )
    assert callable(losses.get("mse"))


def test_unknown_names_suggest_the_closest():
    with pytest.raises(ValueError, match=r"Unknown loss 'focl'.*Did you mean 'focal'"):
        losses.get("focl")
    with pytest.raises(ValueError, match="takes no arguments"):
        losses.get("mse", delta=1.0)
    with pytest.raises(ValueError, match=r"'ldam' \(LDAMLoss\) cannot be built.*class_counts"):
        losses.get("ldam")
    with pytest.raises(ValueError, match="must be a name, a config dict or a loss instance"):
        losses.get(3)
