"""`LossSearchHyperModel`: any model-building function becomes a search over the loss.

The hypermodel calls the user's function (with `hp` when it takes one), compiles the
model with the loss that `choose_loss` picked, an Adam optimizer whose learning rate
may be tuned, and the metrics a loss search ranks by (macro-F1, worst-class recall;
IoU and Dice for segmentation), and refuses to run under a tuner whose objective is a loss.
`make_tuner` builds the keras-tuner tuner with an objective that carries its direction.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import keras
import keras_tuner

from keras_lossopt._validation import check_choice, check_int
from keras_lossopt.tuning import tuners as loss_tuners
from keras_lossopt.tuning.objectives import (
    check_logged_objective,
    check_search_objective,
    default_metrics,
    default_objective,
)
from keras_lossopt.tuning.optimizer_space import (
    build_optimizer,
    choose_optimizer,
    optimizer_hyperparameter_name,
    select_optimizers,
)
from keras_lossopt.tuning.regularization_space import STARTING_PENALTY, choose_regularization, smoothable_candidates
from keras_lossopt.tuning.search_space import (
    TASKS,
    LossCandidate,
    build_loss,
    choose_loss,
    loss_hyperparameter_name,
    resolve_candidates,
)

__all__ = ["TUNERS", "LossSearchHyperModel", "make_tuner"]

TUNERS = ("bayesian", "random", "hyperband", "grid")
"""The values of `make_tuner(tuner=...)`."""


def _takes_hp(build_model: Callable) -> bool:
    try:
        parameters = inspect.signature(build_model).parameters.values()
    except (TypeError, ValueError):  # builtins and some callables have no signature
        return True
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)]
    return bool(positional)


class LossSearchHyperModel(keras_tuner.HyperModel):
    """Wraps a model-building function into a keras-tuner search over the loss.

    Use it to ask "which loss, with which parameters, is best for my model and data?" in
    three lines::

        hypermodel = LossSearchHyperModel(build_model, task="multiclass", class_counts=counts)
        tuner = make_tuner(hypermodel, "bayesian", max_trials=20, directory="search")
        tuner.search(x, y, validation_data=(x_val, y_val), epochs=20)

    Args:
        build_model: returns an uncompiled `keras.Model` whose outputs are logits (or
            probabilities with `from_logits=False`); it may take `hp` to tune its own
            architecture too.
        task: `"binary"`, `"multiclass"` (default), `"multilabel"` or `"segmentation"`.
        candidates: loss candidates (names in `LOSS_CANDIDATES[task]` or
            `LossCandidate`s). Default: `DEFAULT_CANDIDATES[task]`.
        class_counts: training samples per class, for the class-balanced, logit-adjusted
            and LDAM candidates. Default None.
        from_logits: whether the model outputs logits. Default True.
        tune_learning_rate: also search Adam's learning rate (log-uniform in
            `learning_rate_range`), since the best rate depends on the loss' scale.
            Default True.
        learning_rate: the fixed rate when not tuned. Default 1e-3.
        learning_rate_range: `(low, high)` of the tuned rate. Default (1e-3, 1e-2): with
            the 20-30 epochs of a short search, Adam below 1e-3 leaves small models
            under-trained, and those trials only tell the oracle about the rate.
        search_optimizer: also search the optimizer family and its parameters
            (`choose_optimizer`): True for every family in `DEFAULT_OPTIMIZERS`, or a list of
            family names; the family's own learning-rate range then replaces
            `tune_learning_rate`. Default False (Adam).
        search_regularization: also search the regularization strengths
            (`choose_regularization`): an L2 `WeightPenalty` term on every kernel, label
            smoothing for the losses that take it, and the rate of the model's Dropout
            layers when it has some. Default False.
        metrics: metrics to compile with. Default: `default_metrics(task, ...)`.
        jit_compile: passed to `compile`. Default `"auto"`.
        name: hypermodel name. Default None.

    Raises:
        ValueError: for an unknown task, unknown or unavailable candidates, a bad
            learning-rate range, or (when the search runs) a tuner ranking by `val_loss`.

    Examples:
        >>> import keras, keras_tuner
        >>> def build_model():
        ...     return keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        >>> hypermodel = LossSearchHyperModel(build_model, candidates=["crossentropy", "focal"])
        >>> model = hypermodel.build(keras_tuner.HyperParameters())
        >>> model.loss.__class__.__name__
        'SparseCategoricalCrossentropy'
    """

    def __init__(
        self,
        build_model: Callable,
        task: str = "multiclass",
        candidates: Sequence[str | LossCandidate] | None = None,
        *,
        class_counts: Sequence[float] | None = None,
        from_logits: bool = True,
        tune_learning_rate: bool = True,
        learning_rate: float = 1e-3,
        learning_rate_range: tuple[float, float] = (1e-3, 1e-2),
        search_optimizer: bool | Sequence[str] = False,
        search_regularization: bool = False,
        metrics: Sequence[Any] | None = None,
        jit_compile: bool | str = "auto",
        name: str | None = None,
    ):
        super().__init__(name=name, tunable=True)
        if not callable(build_model):
            raise ValueError(f"`build_model` must be callable. Received: {build_model!r}")
        self.build_model = build_model
        self.task = check_choice("task", task, TASKS)
        self.from_logits = bool(from_logits)
        self.candidates = resolve_candidates(
            self.task, candidates, from_logits=self.from_logits, class_counts=class_counts
        )
        if any(c.needs_class_counts for c in self.candidates) and class_counts is None:
            needing = [c.name for c in self.candidates if c.needs_class_counts]
            raise ValueError(
                f"Loss candidates {needing} need the training class counts: pass `class_counts=` "
                "(e.g. numpy.bincount(y_train)) or leave them out of `candidates`."
            )
        self.class_counts = None if class_counts is None else [float(c) for c in class_counts]
        self.tune_learning_rate = bool(tune_learning_rate)
        low, high = (float(v) for v in learning_rate_range)
        if not 0 < low < high:
            raise ValueError(f"`learning_rate_range` must be (low, high) with 0 < low < high. Received: {(low, high)}")
        self.learning_rate_range = (low, high)
        self.learning_rate = float(learning_rate)
        if isinstance(search_optimizer, bool):
            self.optimizers = select_optimizers() if search_optimizer else None
        else:
            self.optimizers = select_optimizers(search_optimizer)
        if not isinstance(search_regularization, bool):
            raise ValueError(f"`search_regularization` must be True or False. Received: {search_regularization!r}")
        self.search_regularization = search_regularization
        self.smoothable = (
            smoothable_candidates(
                self.candidates,
                lambda c: (
                    None
                    if c.needs_class_counts and class_counts is None
                    else build_loss(c, from_logits=self.from_logits, class_counts=class_counts)
                ),
            )
            if search_regularization
            else []
        )
        self.metrics = None if metrics is None else list(metrics)
        self.jit_compile = jit_compile
        self._takes_hp = _takes_hp(build_model)

    def build(self, hp):
        model = self.build_model(hp) if self._takes_hp else self.build_model()
        if not isinstance(model, keras.Model):
            raise ValueError(f"`build_model` must return a keras.Model. Received: {type(model).__name__}")
        loss = choose_loss(hp, self.task, self.candidates, from_logits=self.from_logits, class_counts=self.class_counts)
        if self.optimizers is not None:
            optimizer = choose_optimizer(hp, self.optimizers)
        else:
            learning_rate = self.learning_rate
            if self.tune_learning_rate:
                learning_rate = hp.Float("learning_rate", *self.learning_rate_range, sampling="log")
            optimizer = keras.optimizers.Adam(learning_rate)
        if self.search_regularization:
            loss = choose_regularization(hp, model, loss, smoothable=self.smoothable, chosen_loss=hp.get("loss"))
        metrics = self.metrics
        if metrics is None:
            metrics = default_metrics(self.task, self._num_classes(model), from_logits=self.from_logits)
        model.compile(
            optimizer=optimizer,
            loss=loss,
            # Weighted: validation sample weights (a cross-validated search's balanced folds) reach the
            # metrics; without weights they are the plain metrics.
            weighted_metrics=[
                keras.metrics.deserialize(keras.metrics.serialize(m)) if _is_metric(m) else m for m in metrics
            ],
            jit_compile=self.jit_compile,
        )
        return model

    def _num_classes(self, model) -> int:
        units = model.outputs[0].shape[-1]
        if units is None:
            raise ValueError("The model's output must have a known class axis to build the default metrics.")
        return max(2, int(units))

    def fit(self, hp, model, *args, **kwargs):
        names = []
        for callback in kwargs.get("callbacks") or []:
            search_objective = getattr(callback, "objective", None)
            if isinstance(search_objective, keras_tuner.Objective):
                try:
                    check_search_objective(search_objective)
                except ValueError as error:
                    # A FatalError stops the search at once instead of failing trial after trial.
                    raise keras_tuner.errors.FatalValueError(str(error)) from None
                # keras-tuner's placeholder when a tuner has no objective ranks by the returned history.
                named = getattr(search_objective, "objectives", [search_objective])
                names += [o.name for o in named if o.name != "default_objective"]
        history = model.fit(*args, **kwargs)
        for name in names:
            try:
                check_logged_objective(name, list(history.history))
            except ValueError as error:
                # Logged names are known only after training (callbacks add some); stop after this first trial.
                raise keras_tuner.errors.FatalValueError(str(error)) from None
        return history

    def loss_from_hyperparameters(self, hp):
        """The loss a trial's hyperparameters describe (e.g. the best trial's), ready to compile."""
        chosen = hp.get("loss")
        candidate = next(c for c in self.candidates if c.name == chosen)
        values = {
            p.argument: hp.get(loss_hyperparameter_name(chosen, p.argument))
            for p in candidate.params
            if loss_hyperparameter_name(chosen, p.argument) in hp.values
        }
        return build_loss(candidate, values, from_logits=self.from_logits, class_counts=self.class_counts)

    def starting_points(self, advice, learning_rate: float = 3e-3) -> list[dict[str, Any]]:
        """The advisor's ranked losses as the first trials of this hypermodel's whole space.

        Each point is one of the advisor's losses with its parameters (`advice_starting_points`),
        trained with Adam at `learning_rate` (the family's own rate when the optimizer is
        searched: Adam when it is among the families, else the first family) and, when the
        regularization is searched, an L2 penalty of 1e-4 (a common weight decay).

        Args:
            advice: an `Advice` from `tuning.advise`.
            learning_rate: the starting learning rate. Default 3e-3.

        Returns:
            A list of hyperparameter values, for `make_tuner(starting_points=...)`.
        """
        family = None
        if self.optimizers is not None:
            names = [c.name for c in self.optimizers]
            family = "adam" if "adam" in names else names[0]
        return loss_tuners.advice_starting_points(
            advice,
            self.candidates,
            learning_rate=learning_rate,
            optimizer=family,
            weight_penalty=STARTING_PENALTY if self.search_regularization else None,
        )

    def optimizer_from_hyperparameters(self, hp):
        """The optimizer a trial's hyperparameters describe (a new one), as `build` made it."""
        if self.optimizers is None:
            tuned = self.tune_learning_rate and "learning_rate" in hp.values
            return keras.optimizers.Adam(hp.get("learning_rate") if tuned else self.learning_rate)
        chosen = hp.get("optimizer")
        candidate = next(c for c in self.optimizers if c.name == chosen)
        values = {
            p.argument: hp.get(optimizer_hyperparameter_name(chosen, p.argument))
            for p in candidate.all_params
            if optimizer_hyperparameter_name(chosen, p.argument) in hp.values
        }
        return build_optimizer(candidate, values)


def _is_metric(metric) -> bool:
    # Fresh metric objects per trial: a Metric instance shared between trials keeps state.
    return isinstance(metric, keras.metrics.Metric)


def make_tuner(
    hypermodel: LossSearchHyperModel,
    tuner: str = "bayesian",
    *,
    objective=None,
    max_trials: int = 10,
    max_epochs: int = 20,
    directory: str | None = None,
    project_name: str = "loss_search",
    overwrite: bool = False,
    seed: int | None = None,
    folds: int = 1,
    starting_points=(),
    prune_margin: float = 0.05,
    patience: int | None = None,
    balanced_validation: bool = True,
    **kwargs: Any,
) -> keras_tuner.Tuner:
    """A keras-tuner tuner for a loss search, with a directed objective.

    The tuners are keras-tuner's own classes extended by `tuning.tuners`: stratified
    k-fold trials (`folds`), racing of hopeless trials over folds, early stopping of every
    model, and starting points (e.g. the advisor's picks) as the first trials.

    Args:
        hypermodel: the `LossSearchHyperModel`.
        tuner: `"bayesian"` (default), `"random"`, `"hyperband"` or `"grid"`.
        objective: a metric name or `keras_tuner.Objective`. Default:
            `default_objective(hypermodel.task)`. `val_loss` is refused.
        max_trials: trials for bayesian/random/grid. Default 10.
        max_epochs: Hyperband's largest budget per model. Default 20.
        directory: where trials are stored. Default None (keras-tuner's default).
        project_name: sub-folder of `directory`. Default `"loss_search"`.
        overwrite: start afresh instead of resuming. Default False (resume).
        seed: the oracle's random seed (and the folds' seed). Default None.
        folds: 1 (default) ranks by `validation_data`; k >= 2 ranks by stratified k-fold
            cross-validation on the `x, y` given to `search` (pass no `validation_data`).
            Hyperband needs 1.
        starting_points: hyperparameter values of the first trials, e.g.
            `advice_starting_points(advise(y_train), hypermodel.candidates)`. Default ().
        prune_margin: a trial trailing the best one by more than this on the folds run so
            far stops early. Default 0.05.
        patience: early-stopping patience (epochs without a better objective). Default:
            max(3, epochs // 4).
        balanced_validation: with folds, weigh every class equally in the validation folds'
            metrics (binary and multiclass), so that validation estimates a balanced test
            split rather than the imbalance of the training data. Default True.
        **kwargs: other arguments of the keras-tuner tuner.

    Returns:
        A `keras_tuner.Tuner` (a subclass of keras-tuner's class for `tuner`).

    Raises:
        ValueError: for an unknown tuner, a `val_loss`/undirected objective, folds with
            Hyperband, or starting points with a grid.
    """
    tuner = check_choice("tuner", tuner, TUNERS)
    search_objective = check_search_objective(default_objective(hypermodel.task) if objective is None else objective)
    folds = check_int("folds", folds, minimum=1)
    common = dict(
        hypermodel=hypermodel,
        objective=search_objective,
        directory=directory,
        project_name=project_name,
        overwrite=overwrite,
        seed=seed,
        patience=patience,
        **kwargs,
    )
    if tuner == "hyperband":
        if folds != 1:
            raise ValueError(
                f"Hyperband continues each model from its checkpoint, one model per configuration, so it takes a "
                f"fixed validation split: use folds=1 with tuner='hyperband', or tuner='bayesian' with folds={folds}."
            )
        return loss_tuners.LossSearchHyperband(
            max_epochs=check_int("max_epochs", max_epochs, minimum=1), starting_points=starting_points, **common
        )
    max_trials = check_int("max_trials", max_trials, minimum=1)
    cv = dict(folds=folds, split_seed=seed or 0, prune_margin=prune_margin, balanced_validation=balanced_validation)
    if tuner == "grid":
        if starting_points:
            raise ValueError("A grid search runs every grid point; it takes no `starting_points`.")
        return loss_tuners.LossSearchGrid(max_trials=max_trials, **cv, **common)
    tuner_class = loss_tuners.LossSearchBayesian if tuner == "bayesian" else loss_tuners.LossSearchRandom
    return tuner_class(max_trials=max_trials, starting_points=starting_points, **cv, **common)
