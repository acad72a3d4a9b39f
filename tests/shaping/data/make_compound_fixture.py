"""Writes .keras files with DiceCELoss / DiceFocalLoss as saved by the pre-composite code (commit f7af531).

Run once from the repository root: `python tests/shaping/data/make_compound_fixture.py tests/shaping/data`.
"""

import json
import os
import sys

os.environ["KERAS_BACKEND"] = "tensorflow"
import keras
import numpy as np

from keras_lossopt.losses import DiceCELoss, DiceFocalLoss, DiceLoss, FocalLoss


def main() -> None:
    out = sys.argv[1]
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(4, 6, 6, 2)).astype("float32")
    y = np.random.default_rng(1).integers(0, 3, size=(4, 6, 6))

    def model():
        inp = keras.Input((6, 6, 2))
        return keras.Model(inp, keras.layers.Conv2D(3, 1, activation="softmax")(inp))

    losses = {
        "dice_ce": DiceCELoss(dice_weight=0.7, ce_weight=1.3, ignore_index=2),
        "dice_focal": DiceFocalLoss(dice_weight=0.4, focal_weight=2.0, gamma=1.5, from_logits=False),
        "dice_ce_children": DiceCELoss(
            dice=DiceLoss(per_image=False, smooth_nr=0.0), cross_entropy=FocalLoss(gamma=0.0, label_smoothing=0.1)
        ),
    }
    values = {}
    for name, loss in losses.items():
        m = model()
        m.compile("sgd", loss=loss)
        m.save(f"{out}/{name}.keras")
        values[name] = {"loss": float(loss(y, m.predict(x, verbose=0))), "config": loss.get_config()}
    np.savez(f"{out}/batch.npz", x=x, y=y)
    json.dump(values, open(f"{out}/values.json", "w"), indent=1, default=str)


if __name__ == "__main__":
    main()
