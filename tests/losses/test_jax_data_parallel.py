"""On JAX, `keras.distribution.DataParallel` over two host devices gives the single-device loss.

The losses whose divisor depends on the data (batch Dice, Tversky, ... over the pixels that
are not ignored; the mean over valid positions) need the global counts: under TensorFlow's
`MirroredStrategy` they sum them across replicas (tests/losses/contract.py). JAX's
data-parallel step is one SPMD program over the sharded global batch, so the same code must
give the single-device loss and the same training step, and the batch Lovasz (a mean of the
shards' losses under MirroredStrategy) is exact there. The devices are configured before JAX
starts, so the check runs in a fresh process.
"""

import json
import os
import subprocess
import sys
import textwrap

import keras
import pytest

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "jax", reason="runs in the JAX pass (a fresh process with two host devices)"
)

SCRIPT = textwrap.dedent(
    """
    import os
    os.environ["KERAS_BACKEND"] = "jax"
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    import json
    import jax, keras
    import numpy as np
    from keras_lossopt.losses import (
        DiceLoss, FocalLoss, FocalTverskyLoss, GeneralizedDiceLoss, JaccardLoss, LovaszSoftmaxLoss, TverskyLoss,
    )

    rng = np.random.default_rng(0)
    N, H, W, C = 8, 6, 6, 3
    x = rng.normal(size=(N, H, W, 2)).astype("float32")
    labels = rng.integers(0, C, size=(N, H, W))
    labels[:3, :, :3] = 255  # ignored pixels, all in the first shard: the shards' divisors differ
    weights = rng.uniform(0.2, 2.0, size=(N,)).astype("float32")
    LOSSES = {
        "dice_batch": lambda: DiceLoss(from_logits=True, per_image=False, ignore_index=255),
        "dice_per_image": lambda: DiceLoss(from_logits=True, ignore_index=255),
        "tversky_batch": lambda: TverskyLoss(alpha=0.7, beta=0.3, from_logits=True, per_image=False, ignore_index=255),
        "focal_tversky_batch": lambda: FocalTverskyLoss(from_logits=True, per_image=False, ignore_index=255),
        "generalized_dice_batch": lambda: GeneralizedDiceLoss(from_logits=True, per_image=False, ignore_index=255),
        "jaccard_batch": lambda: JaccardLoss(from_logits=True, per_image=False, ignore_index=255),
        "lovasz_batch": lambda: LovaszSoftmaxLoss(from_logits=True, ignore_index=255),
        "focal_ignore_index": lambda: FocalLoss(from_logits=True, ignore_index=255),
    }

    def model():
        keras.utils.set_random_seed(0)
        inputs = keras.Input((H, W, 2))
        return keras.Model(inputs, keras.layers.Conv2D(C, 3, padding="same")(inputs))

    def run(name, start):
        m = model()
        m.set_weights(start)
        m.compile(keras.optimizers.SGD(0.5), loss=LOSSES[name]())
        sample_weight = None if name == "lovasz_batch" else weights  # a batch Lovasz takes no sample_weight
        value = m.evaluate(x, labels, sample_weight=sample_weight, batch_size=N, verbose=0)
        m.fit(x, labels, sample_weight=sample_weight, batch_size=N, epochs=1, verbose=0, shuffle=False)
        return value, m.get_weights()

    start = model().get_weights()
    single = {name: run(name, start) for name in LOSSES}
    distribution = keras.distribution.DataParallel(devices=jax.devices())
    keras.distribution.set_distribution(distribution)
    out = {
        "devices": len(jax.devices()),
        "batch_axis": list(distribution.get_data_layout((N, H, W, 2)).axes),
    }
    for name in LOSSES:
        value, trained = run(name, start)
        moved = max(float(np.max(np.abs(a - b))) for a, b in zip(single[name][1], start))
        gap = max(float(np.max(np.abs(a - b))) for a, b in zip(single[name][1], trained))
        out[name] = {"single": single[name][0], "data_parallel": value, "moved": moved, "gap": gap}
    print("RESULT " + json.dumps(out))
    """
)


def test_data_parallel_on_two_host_devices_gives_the_single_device_loss_and_step():
    env = {key: value for key, value in os.environ.items() if key != "XLA_FLAGS"}
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=600, env=env)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, done.stderr[-3000:]
    result = json.loads(lines[0][len("RESULT ") :])
    assert result.pop("devices") == 2
    assert result.pop("batch_axis")[0] == "batch"  # the batch really is split over the two devices
    for name, numbers in result.items():
        assert numbers["data_parallel"] == pytest.approx(numbers["single"], rel=1e-6), name
        # The same training step: the weights moved, and by the same amount on one and two devices.
        assert numbers["moved"] > 1e-3, name
        assert numbers["gap"] < 1e-6 * max(1.0, numbers["moved"]) + 1e-7, name
