"""Eager driver shared by the evaluation attacks: attack only the samples still standing.

APGD's restarts and target classes and Square's query segments are rounds; each round runs a
compiled function on the samples that no earlier round has fooled (and that the model
classifies correctly to begin with), as the reference AutoAttack code does. A sample that is
already misclassified costs nothing more.
"""

from __future__ import annotations

import numpy as np
from keras import ops

from keras_lossopt.adversarial.base import (
    check_class_labels,
    check_input_range,
    check_single_input_output,
    output_classes,
    prepare_batch,
)
from keras_lossopt.adversarial.objectives import class_scores, predicted_labels, sparse_labels


def as_float_batch(x, y, model=None, attack=None):
    """`(x_work, labels_or_y, to_output)`: a float NumPy copy of `x`, `y` as NumPy, and the cast back.

    With `model` and `attack`, it also makes the input checks of every attack call (see
    `CompiledAttack`): one input and one output, `x` finite and inside `attack.clip`, class
    labels inside the model's classes.

    Raises:
        ValueError: when `x` and `y` hold different numbers of samples, or a check fails.
    """
    if model is not None:
        check_single_input_output(model)
    x_tensor, y_tensor, to_output = prepare_batch(x, y)
    if attack is not None:
        check_input_range(x_tensor, attack.clip, attack)
        check_class_labels(y_tensor, output_classes(model, x_tensor))
    x_work, y_array = x_tensor.numpy(), y_tensor.numpy()  # x_tensor is a copy: the caller's x is never written
    if x_work.ndim < 2:
        raise ValueError(f"`x` must be a batch of shape (N, ...). Received: x.shape={x_work.shape}")
    if y_array.shape[:1] != x_work.shape[:1]:
        raise ValueError(
            f"`x` and `y` must hold the same number of samples. Received: x.shape={x_work.shape}, "
            f"y.shape={y_array.shape}"
        )
    return x_work, y_array, to_output


def clean_predictions(model, x, y, from_logits):
    """`(labels, correct)`: sparse labels `(N,)` int32 and whether the clean input is classified right."""
    scores = class_scores(model(ops.convert_to_tensor(x), training=False), from_logits)
    labels = sparse_labels(ops.convert_to_tensor(y), scores.shape[-1])
    correct = ops.equal(predicted_labels(scores), labels)
    return np.asarray(ops.convert_to_numpy(labels)), np.asarray(ops.convert_to_numpy(correct)), scores.shape[-1]


def attack_survivors(x, standing, rounds, run):
    """Runs `run(index, round)` for each round on the indices of the samples still `standing`.

    Args:
        x: float NumPy batch (not modified).
        standing: bool `(N,)`, the samples to attack (correctly classified); a copy is updated.
        rounds: the per-round arguments (target ranks and restarts, query segments).
        run: `run(index, round)` returns `(x_adv_sub, fooled_sub)` as NumPy arrays for the
            samples `index`.

    Returns:
        `(x_adv, standing)`: the adversarial batch (a fooling example where one was found,
        else the last round's strongest point) and which samples are still standing.
    """
    x_adv = x.copy()
    standing = np.array(standing, dtype=bool)
    for round_argument in rounds:
        index = np.flatnonzero(standing)
        if index.size == 0:
            break
        x_round, fooled = run(index, round_argument)
        x_adv[index] = x_round
        standing[index[np.asarray(fooled, dtype=bool)]] = False
    return x_adv, standing
