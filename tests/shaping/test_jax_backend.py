"""On JAX a compiled step sees only the state the model tracks: weights must be tracked to change (subprocess)."""

import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import os
    os.environ["KERAS_BACKEND"] = "jax"
    import keras, numpy as np
    from keras_lossopt.shaping import CompositeLoss, LossWeightScheduler, StepSchedule, track_loss_terms

    def square(y_true, y_pred):
        return keras.ops.mean(keras.ops.square(y_pred), axis=-1)

    x = np.random.default_rng(0).normal(size=(8, 4)).astype("float32")
    y = np.zeros((8, 3), "float32")

    def model_and_loss():
        inputs = keras.Input((4,))
        model = keras.Model(inputs, keras.layers.Dense(3)(inputs))
        loss = CompositeLoss({"zero": "mse", "square": square}, weights=[0.0, 1.0])
        model.compile(keras.optimizers.SGD(0.0), loss=loss, jit_compile=True)
        return model, loss, float(np.mean(model.predict(x, verbose=0) ** 2))

    for tracked in (False, True):
        model, loss, base = model_and_loss()
        if tracked:
            track_loss_terms(model)
        ratios = []
        for weight in (16.0, 160.0, 1600.0):
            loss.set_weights({"square": weight})
            ratios.append(model.train_on_batch(x, y, return_dict=True)["loss"] / base)
        print("tracked" if tracked else "untracked", *np.round(ratios, 3))

    model, loss, _ = model_and_loss()
    prediction = model.predict(x, verbose=0)
    batch_base = [float(np.mean(prediction[:4] ** 2)), float(np.mean(prediction[4:] ** 2))]
    running = []
    class Steps(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            running.append(logs["loss"])
    schedule = LossWeightScheduler({"square": StepSchedule([1, 3], [1.0, 10.0, 100.0])}, by="step")
    model.fit(x, y, batch_size=4, epochs=2, verbose=0, shuffle=False, callbacks=[schedule, Steps()])
    steps = [running[0], 2 * running[1] - running[0], running[2], 2 * running[3] - running[2]]
    steps = [value / batch_base[i % 2] for i, value in enumerate(steps)]
    print("scheduled", *np.round(steps, 3))
    """
)


@pytest.mark.slow
def test_weights_change_inside_a_jit_compiled_jax_step_only_when_tracked():
    pytest.importorskip("jax")
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=600)
    lines = {line.split()[0]: [float(v) for v in line.split()[1:]] for line in out.stdout.splitlines() if line}
    assert "scheduled" in lines, out.stderr[-3000:]
    # The failure the tracking prevents: a variable only the loss owns is a constant of the compiled step.
    assert lines["untracked"] == pytest.approx([16.0, 16.0, 16.0], rel=1e-4)
    assert lines["tracked"] == pytest.approx([16.0, 160.0, 1600.0], rel=1e-4)
    assert lines["scheduled"] == pytest.approx([1.0, 10.0, 10.0, 100.0], rel=1e-3)
