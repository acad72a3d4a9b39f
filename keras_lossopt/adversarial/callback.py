"""Robust accuracy as an epoch metric, clean-vs-adversarial figures, and a collapse guard.

`RobustnessEvaluation` attacks a validation set at the end of an epoch and writes
`val_robust_accuracy` and `val_attack_success_rate` into the epoch logs, where `History`,
`CSVLogger`, `EarlyStopping`, `ModelCheckpoint`, TensorBoard and keras-tuner objectives
read them (list it *before* those callbacks: callbacks run in list order and share the
logs dict). The progress bar prints before callbacks run, so it does not show these keys.

`keras_lossopt.callbacks` re-exports both names (loaded on first use, so that importing
the callbacks does not load the attacks); the registered name
`keras_lossopt>RobustnessEvaluation` is the same under both paths.
"""

from __future__ import annotations

import copy
import math
import pathlib
import warnings
from typing import Any

import keras
import numpy as np
from keras import ops

from keras_lossopt._validation import check_choice, check_in_range, check_int
from keras_lossopt.adversarial._backend import is_tf_dataset
from keras_lossopt.adversarial._checks import check_input_range, check_labels_for_model
from keras_lossopt.adversarial.evaluation import STRENGTHS, evaluate_robustness, resolve_evaluation_attack
from keras_lossopt.adversarial.objectives import class_scores, detect_from_logits, predicted_labels, sparse_labels
from keras_lossopt.adversarial.training import AdversarialModel

__all__ = ["RobustnessEvaluation", "plot_adversarial_grid"]


@keras.saving.register_keras_serializable(package="keras_lossopt")
class RobustnessEvaluation(keras.callbacks.Callback):
    """Adds robust validation accuracy to the epoch logs and guards against its collapse.

    Use it with any model, and with `AdversarialModel` (the wrapped model is attacked).
    With fast adversarial training, set `collapse_fraction` to stop when robust accuracy
    against a multi-step attack collapses (catastrophic overfitting, Wong et al. 2020)
    and to return to the weights of the best robust epoch.

    Logs (with the default `prefix="val_"`):
        `val_robust_accuracy`: share of validation samples classified correctly clean and
            under the attack (the worst case per sample for a list of attacks).
        `val_attack_success_rate`: share of the correctly classified samples the attack fools.
        They are added at the first epoch, every `every_n_epochs` epochs and at the last
        epoch (like Keras' `validation_freq`, other epochs lack the keys).

    Args:
        attack: an untargeted attack, or a list of attacks (worst case per sample), e.g.
            `ProjectedGradientDescent(eps=0.3, steps=20)`; None to use `eps` and `strength`.
        validation_data: `(x, y)` arrays or a `tf.data.Dataset` of `(x, y)`.
        every_n_epochs: evaluate every this many epochs (and at the last). Default 1.
        batch_size: attack batch size. Default 256.
        max_samples: evaluate only the first this many samples (arrays). Default None (all).
        prefix: prefix of the log keys. Default `"val_"`.
        collapse_fraction: stop training when robust accuracy falls below this fraction
            of its best so far (in (0, 1)); None (default) disables the guard.
        collapse_min_best: the guard acts only once the best robust accuracy reached
            this value, so that noise around a low accuracy is not a collapse. Default 0.1.
        restore_best_weights: on a collapse, restore the weights of the best robust
            epoch. Default True.
        plot_path: path of a PNG grid of clean and adversarial examples with their
            predictions, saved at each evaluation; may contain `{epoch}` (1-based), e.g.
            `"robust_{epoch:02d}.png"`. Needs matplotlib (`[plot]` extra). Default None.
        plot_samples: number of examples in the grid. Default 8.
        verbose: 1 prints one line per evaluation. Default 0.
        eps: budget of the attacks chosen by `strength` (when `attack` is None).
        strength: `"pgd"` (default: PGD-20 on cross-entropy and margin; cheap enough for
            every epoch), `"fast"` or `"standard"` (AutoAttack; `"standard"` matches published
            AutoAttack numbers, at about 50 times the cost). See `evaluation_attack`. The
            sanity checks of `evaluate_robustness` are not run per epoch.

    Attributes:
        results: one dict per evaluation (`epoch`, `robust_accuracy`, ...).
        best: best robust accuracy; `best_epoch` its epoch (0-based).
        collapsed_epoch: the epoch at which the guard stopped training, else None.

    Raises:
        ValueError: for `every_n_epochs < 1`, `collapse_fraction` outside (0, 1), a
            targeted attack, an attack given by name (`"pgd"`: build
            `ProjectedGradientDescent(eps=...)`), an unknown `strength`, neither `attack`
            nor `eps` (or both `attack` and a non-default `strength`), `validation_data`
            that is not `(x, y)` with one label per input, or inputs outside the attack's
            `clip`; at the start of `fit`, labels outside the model's classes.

    Examples:
        >>> import keras, numpy as np
        >>> from keras_lossopt.adversarial import FastGradientMethod
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
        >>> model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        >>> x = np.random.default_rng(0).uniform(size=(16, 4)).astype("float32")
        >>> y = (x[:, 0] > 0.5).astype(int)
        >>> callback = RobustnessEvaluation(FastGradientMethod(0.1), (x, y))
        >>> history = model.fit(x, y, epochs=1, verbose=0, callbacks=[callback])
        >>> "val_robust_accuracy" in history.history
        True

    References:
        Wong, Rice, Kolter (2020). Fast is better than free: Revisiting adversarial training. ICLR.
    """

    def __init__(
        self,
        attack=None,
        validation_data=None,
        every_n_epochs=1,
        batch_size=256,
        max_samples=None,
        prefix="val_",
        collapse_fraction=None,
        collapse_min_best=0.1,
        restore_best_weights=True,
        plot_path=None,
        plot_samples=8,
        verbose=0,
        eps=None,
        strength="pgd",
    ):
        super().__init__()
        self.strength = check_choice("strength", strength, STRENGTHS)
        self.eps = eps
        # An attack built from eps and strength is stored as those two, so that a config round trip keeps them.
        self._attack_from_strength = attack is None
        self.attack = resolve_evaluation_attack(attack, eps, self.strength, name="attack")
        _check_validation_data(validation_data, attack)
        self.validation_data = validation_data
        self.every_n_epochs = check_int("every_n_epochs", every_n_epochs, minimum=1)
        self.batch_size = check_int("batch_size", batch_size, minimum=1)
        self.max_samples = None if max_samples is None else check_int("max_samples", max_samples, minimum=1)
        self.prefix = str(prefix)
        if collapse_fraction is not None:
            collapse_fraction = check_in_range(
                "collapse_fraction", collapse_fraction, 0.0, 1.0, low_inclusive=False, high_inclusive=False
            )
        self.collapse_fraction = collapse_fraction
        self.collapse_min_best = check_in_range("collapse_min_best", collapse_min_best, 0.0, 1.0)
        self.restore_best_weights = bool(restore_best_weights)
        self.plot_path = None if plot_path is None else str(plot_path)
        self.plot_samples = check_int("plot_samples", plot_samples, minimum=1)
        self.verbose = int(verbose)
        self._reset()

    def _reset(self):
        self.results: list[dict[str, Any]] = []
        self.best = -math.inf
        self.best_epoch = None
        self.collapsed_epoch = None
        self._best_weights = None

    def get_config(self) -> dict[str, Any]:
        """Every constructor argument; `validation_data` is kept as given (not JSON)."""
        return {
            "attack": None if self._attack_from_strength else keras.saving.serialize_keras_object(self.attack),
            "validation_data": self.validation_data,
            "every_n_epochs": self.every_n_epochs,
            "batch_size": self.batch_size,
            "max_samples": self.max_samples,
            "prefix": self.prefix,
            "collapse_fraction": self.collapse_fraction,
            "collapse_min_best": self.collapse_min_best,
            "restore_best_weights": self.restore_best_weights,
            "plot_path": self.plot_path,
            "plot_samples": self.plot_samples,
            "verbose": self.verbose,
            "eps": self.eps,
            "strength": self.strength,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __deepcopy__(self, memo):
        # keras-tuner copies callbacks per trial: a fresh callback with the same settings.
        config = self.get_config()
        data = config.pop("validation_data")
        config = copy.deepcopy(config, memo)
        data = data if is_tf_dataset(data) else copy.deepcopy(data, memo)
        return type(self).from_config({**config, "validation_data": data})

    # ----------------------------------------------------------------- callback hooks
    def on_train_begin(self, logs=None):
        self._reset()
        if self.validation_data is None:
            raise ValueError("RobustnessEvaluation needs `validation_data`: (x, y) arrays or a tf.data.Dataset.")
        if not is_tf_dataset(self.validation_data):
            # Labels against the model's classes: known only now that the model is.
            x, y = (np.asarray(part) for part in self.validation_data[:2])
            model = self._target_model()
            check_labels_for_model(y, model, x, name="validation_data")
            if hasattr(self.attack, "prepare") and len(x) and self.attack.eps > 0:
                # The attack's model checks (classes, from_logits, gradient) now, not after the first epoch.
                self.attack.prepare(model, ops.convert_to_tensor(x[:16], "float32"), ops.convert_to_tensor(y[:16]))

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            logs = {}
        if not self._due(epoch):
            return
        target = self._target_model()
        result = evaluate_robustness(
            target,
            self._data(),
            self.attack,
            batch_size=self.batch_size,
            return_adversarial=self.plot_path is not None,
            sanity_checks=False,  # they attack again at several budgets: for a final evaluation, not every epoch
        )
        logs[f"{self.prefix}robust_accuracy"] = result["robust_accuracy"]
        logs[f"{self.prefix}attack_success_rate"] = result["attack_success_rate"]
        record = {"epoch": epoch, **{k: v for k, v in result.items() if k != "x_adv"}}
        self.results.append(record)
        if self.verbose:
            print(
                f"Epoch {epoch + 1}: {self.prefix}robust_accuracy={result['robust_accuracy']:.4f} "
                f"(clean {result['clean_accuracy']:.4f}, attack success {result['attack_success_rate']:.4f})"
            )
        if self.plot_path is not None:
            self._plot(epoch, target, result["x_adv"])
        self._guard(epoch, result["robust_accuracy"])

    # ----------------------------------------------------------------- internals
    def _due(self, epoch):
        last = self.params.get("epochs") if self.params else None
        # The first epoch always counts, so that CSVLogger (which fixes its columns at the
        # first epoch) sees the keys; later epochs without an evaluation write "NA" there.
        return epoch == 0 or (epoch + 1) % self.every_n_epochs == 0 or (last is not None and epoch + 1 == last)

    def _target_model(self):
        return self.model.model if isinstance(self.model, AdversarialModel) else self.model

    def _data(self):
        data = self.validation_data
        if self.max_samples is None:
            return data
        if is_tf_dataset(data):
            return data.unbatch().take(self.max_samples) if _is_batched(data) else data.take(self.max_samples)
        return tuple(np.asarray(part)[: self.max_samples] for part in data[:2])

    def _guard(self, epoch, accuracy):
        if accuracy > self.best:
            self.best, self.best_epoch = accuracy, epoch
            if self.collapse_fraction is not None and self.restore_best_weights:
                self._best_weights = self.model.get_weights()
            return
        if self.collapse_fraction is None or self.best < self.collapse_min_best:
            return
        if accuracy < self.collapse_fraction * self.best:
            self.collapsed_epoch = epoch
            self.model.stop_training = True
            restored = self.restore_best_weights and self._best_weights is not None
            if restored:
                self.model.set_weights(self._best_weights)
            warnings.warn(
                f"Robust accuracy collapsed at epoch {epoch + 1}: {self.prefix}robust_accuracy={accuracy:.4f} "
                f"< {self.collapse_fraction:g} x best {self.best:.4f} (epoch {self.best_epoch + 1}); "
                f"training stopped{' and the best weights restored' if restored else ''}.",
                stacklevel=2,
            )

    def _plot(self, epoch, model, x_adv):
        x, y = _first_arrays(self._data(), len(x_adv))
        n = min(self.plot_samples, len(x))
        path = pathlib.Path(self.plot_path.format(epoch=epoch + 1))
        plot_adversarial_grid(model, x[:n], x_adv[:n], y[:n], path)


def _check_validation_data(data, attack):
    """Shape and range checks of `validation_data` that need no model (None is allowed for configs)."""
    if data is None:
        return
    if is_tf_dataset(data):
        spec = data.element_spec
        if not isinstance(spec, tuple) or len(spec) < 2:
            raise ValueError(
                f"`validation_data` must yield (x, y) or (x, y, sample_weight). Received: element_spec={spec}"
            )
        return
    if not isinstance(data, (tuple, list)) or len(data) < 2:
        raise ValueError(
            "`validation_data` must be a tuple (x, y) of arrays or a tf.data.Dataset of (x, y). "
            f"Received: validation_data of type {type(data).__name__}"
        )
    x, y = np.asarray(data[0]), np.asarray(data[1])
    if x.ndim == 0 or y.ndim == 0 or len(x) != len(y):
        raise ValueError(
            f"`validation_data` must hold one label per input. Received: x.shape={x.shape}, y.shape={y.shape}"
        )
    if x.dtype.kind not in "biuf":
        raise TypeError(f"`validation_data` inputs must be numeric. Received: x of dtype {x.dtype}")
    for each in getattr(attack, "attacks", [attack]):
        if hasattr(each, "clip"):
            check_input_range(x.astype("float32", copy=False), each.clip, each)


def _is_batched(dataset):
    spec = dataset.element_spec[0]
    return len(spec.shape) > 0 and spec.shape[0] is None


def _first_arrays(data, limit):
    if is_tf_dataset(data):
        xs, ys = [], []
        source = data.unbatch() if _is_batched(data) else data
        for element in source.take(limit):
            xs.append(np.asarray(element[0]))
            ys.append(np.asarray(element[1]))
        return np.stack(xs), np.stack(ys)
    return np.asarray(data[0])[:limit], np.asarray(data[1])[:limit]


def _as_image(sample):
    sample = np.asarray(sample, dtype="float32")
    if sample.ndim == 3 and sample.shape[-1] in (1, 3):
        return sample[..., 0] if sample.shape[-1] == 1 else sample
    if sample.ndim == 2:
        return sample
    side = math.isqrt(sample.size)
    if side * side == sample.size:
        return sample.reshape(side, side)
    return None


def plot_adversarial_grid(model, x, x_adv, y, path):
    """Saves a PNG: clean inputs (top row) and adversarial ones (bottom) with predictions.

    Titles give the true label and the prediction; wrong predictions are red. Inputs must
    be images `(H, W[, C])` or flat vectors of square size (e.g. 64 or 784 pixels).

    Args:
        model: the attacked model.
        x: clean inputs.
        x_adv: adversarial inputs, same shape as `x`.
        y: labels (sparse or one-hot).
        path: PNG path; parent folders are created.

    Returns:
        The path written, or None (with a warning) when the inputs are not images.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:  # pragma: no cover - exercised only without the extra
        raise ImportError("plot_path needs matplotlib: pip install 'keras-lossopt[plot]'") from error
    images = [_as_image(s) for s in x]
    if any(image is None for image in images):
        warnings.warn(f"Cannot draw inputs of shape {np.shape(x)[1:]} as images; no grid saved.", stacklevel=2)
        return None
    from_logits = detect_from_logits(model)
    scores_clean = class_scores(model(x, training=False), from_logits)
    scores_adv = class_scores(model(x_adv, training=False), from_logits)
    labels = np.asarray(ops.convert_to_numpy(sparse_labels(ops.convert_to_tensor(y), scores_clean.shape[-1])))
    pred_clean = np.asarray(ops.convert_to_numpy(predicted_labels(scores_clean)))
    pred_adv = np.asarray(ops.convert_to_numpy(predicted_labels(scores_adv)))
    n = len(x)
    figure = Figure(figsize=(1.4 * n, 3.2))
    FigureCanvasAgg(figure)
    for i in range(n):
        for row, (batch, predictions, title) in enumerate(((x, pred_clean, "clean"), (x_adv, pred_adv, "adv"))):
            axis = figure.add_subplot(2, n, row * n + i + 1)
            image = _as_image(batch[i])
            axis.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0.0, vmax=1.0)
            color = "black" if predictions[i] == labels[i] else "red"
            axis.set_title(f"{title} y={labels[i]} p={predictions[i]}", fontsize=7, color=color)
            axis.axis("off")
    figure.tight_layout()
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=80)
    return path
