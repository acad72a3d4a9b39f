"""A tiny loss search run as its own process by the resume and distributed tests.

    python tests/tuning/search_job.py DIRECTORY MAX_TRIALS [SECONDS_PER_EPOCH]

Reads KERASTUNER_* from the environment (distributed mode) and appends
"<tuner id> <trial id>" to DIRECTORY/ran.txt for every trial it trains.
"""

import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np

from keras_lossopt import tuning


class _SlowEpochs(keras.callbacks.Callback):
    """Makes each epoch last long enough for a test to kill the process mid-search."""

    def __init__(self, seconds):
        super().__init__()
        self.seconds = seconds

    def on_epoch_end(self, epoch, logs=None):
        time.sleep(self.seconds)


class _LoggingHyperModel(tuning.LossSearchHyperModel):
    def __init__(self, *args, log_path, **kwargs):
        super().__init__(*args, **kwargs)
        self.log_path = log_path

    def fit(self, hp, model, *args, **kwargs):
        result = super().fit(hp, model, *args, **kwargs)
        tuner_id = os.environ.get("KERASTUNER_TUNER_ID", "tuner0")
        with open(self.log_path, "a") as log:
            log.write(f"{tuner_id} {hp.get('loss')}\n")
        return result


def main(directory, max_trials, seconds_per_epoch=0.0):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 4)).astype("float32")
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype("int64") + (x[:, 2] > 1.0).astype("int64")

    def build_model():
        return keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])

    hypermodel = _LoggingHyperModel(
        build_model,
        task="multiclass",
        candidates=["crossentropy", "focal", "poly1"],
        log_path=os.path.join(directory, "ran.txt"),
        jit_compile=False,
    )
    tuner = tuning.make_tuner(
        hypermodel, "random", max_trials=max_trials, directory=directory, project_name="job", seed=1
    )
    tuner.search(
        x,
        y,
        validation_data=(x, y),
        epochs=2,
        batch_size=64,
        verbose=0,
        callbacks=[_SlowEpochs(seconds_per_epoch)] if seconds_per_epoch else [],
    )


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]) if len(sys.argv) > 3 else 0.0)
