"""What the `keras-lossopt` command takes from tuning beyond its public API (the command is its only user).

The checks the command runs before TensorFlow starts (the labels against the folds, the loss
names, the objective against the metrics a search logs) and the split of a trial's
hyperparameters into the parts of its report. They keep their homes in the tuning modules
that apply them (the hypermodel checks the logged objective too); they are not part of the
package's public names, and `tests/test_package_layering.py` lets only `cli` import this module.
"""

from __future__ import annotations

from keras_lossopt.tuning.configuration import split_hyperparameters
from keras_lossopt.tuning.objectives import DEFAULT_METRIC_NAMES, check_logged_objective
from keras_lossopt.tuning.search_space import select_candidates
from keras_lossopt.tuning.validation import check_labels

__all__ = [
    "DEFAULT_METRIC_NAMES",
    "check_labels",
    "check_logged_objective",
    "select_candidates",
    "split_hyperparameters",
]
