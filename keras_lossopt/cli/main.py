"""The `keras-lossopt` command: `compare` losses, or `search` for the best one.

    keras-lossopt compare                     # digits-imbalanced, default losses, 3 seeds
    keras-lossopt compare --data mnist-imbalanced --losses crossentropy,focal,poly1
    keras-lossopt compare --data my.csv --target label
    keras-lossopt search --tuner bayesian --max-trials 20 --directory my-search
    keras-lossopt search --space loss,optimizer,regularization --max-trials 30   # the whole training objective
    keras-lossopt advise --data my.csv --target label   # ranked losses with parameters, nothing trained

Bad input ends with one line `keras-lossopt: error: ...` and exit status 2 (set
KERAS_LOSSOPT_DEBUG=1 for the full traceback). Every argument, path and the data itself
are checked before TensorFlow starts, so a mistake costs a fraction of a second, not the
10 s of TensorFlow's start-up or a whole run. TensorFlow's C++ start-up messages are kept
off the terminal unless TF_CPP_MIN_LOG_LEVEL is set to 0.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import pathlib
import sys
import tempfile
from collections.abc import Iterator, Sequence

__all__ = ["EXIT_BAD_INPUT", "build_parser", "main"]

EXIT_BAD_INPUT = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        # argparse prints the usage block too; one line says it.
        self.exit(EXIT_BAD_INPUT, f"keras-lossopt: error: {message}\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text!r}")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer from 0 to 2**32 - 1, got {text!r}") from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"expected an integer from 0 to 2**32 - 1 (NumPy's seed range), got {text!r}")
    return value


def _folder_name(text: str) -> str:
    if not text.strip() or text in (".", "..") or any(sep in text for sep in ("/", "\\", os.sep)):
        raise argparse.ArgumentTypeError(f"expected a plain folder name (no path), got {text!r}")
    return text


def _loss_list(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected comma-separated loss names")
    return names


def _space(text: str) -> list[str]:
    from keras_lossopt.cli.space import parse_space

    try:
        return parse_space(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _data_arguments(data) -> None:
    data.add_argument(
        "--data",
        default="digits-imbalanced",
        help="built-in dataset (digits, digits-imbalanced, mnist, mnist-imbalanced, breast-cancer, shapes) "
        "or a .npz (x, y or x_train ... y_test) / .csv file. Default: digits-imbalanced",
    )
    data.add_argument(
        "--target",
        help="the label column of a .csv file: required with a .csv file, whose first line must name its columns",
    )
    data.add_argument(
        "--task",
        default="auto",
        choices=("auto", "binary", "multiclass", "segmentation"),
        help="default: inferred from the labels",
    )


def _folds(parser: argparse.ArgumentParser, default: int | None, help_text: str) -> None:
    parser.add_argument("--folds", type=_positive_int, default=default, help=help_text)


def _common(parser: argparse.ArgumentParser, *, epochs: int) -> None:
    data = parser.add_argument_group("data and model")
    _data_arguments(data)
    data.add_argument("--model", help="a .keras model file outputting logits (default: chosen to fit the data)")
    data.add_argument(
        "--losses",
        type=_loss_list,
        help="comma-separated loss candidates (default per task: "
        "crossentropy,focal,poly1,class_balanced_focal,logit_adjusted,ldam for multiclass; "
        "crossentropy,focal,poly1,class_balanced_focal for binary; crossentropy,dice_ce,log_dice,lovasz "
        "for segmentation)",
    )
    training = parser.add_argument_group("training")
    training.add_argument("--epochs", type=_positive_int, default=epochs, help=f"default: {epochs}")
    training.add_argument("--batch-size", type=_positive_int, default=64, help="default: 64")
    training.add_argument(
        "--seed", type=_seed, default=0, help="seed of the data split (and of the search). Default: 0"
    )


class _PrintVersion(argparse.Action):
    """`--version`: the installed distribution's version (setup.cfg takes it from `keras_lossopt.__version__`),
    looked up only when asked (reading the installed metadata costs time every other run would pay)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        from importlib import metadata

        try:
            version = metadata.version("keras-lossopt")
        except metadata.PackageNotFoundError:  # run from a source tree that was never installed
            version = "(not installed)"
        print(f"{parser.prog} {version}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `keras-lossopt` with its subcommands."""
    parser = _Parser(prog="keras-lossopt", description="Compare losses, or search for the best loss, on your data.")
    parser.add_argument("--version", action=_PrintVersion, help="show the installed version and exit")
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="{compare,search,advise}", parser_class=_Parser
    )

    compare = commands.add_parser("compare", help="train the same model with several losses over several seeds")
    _common(compare, epochs=30)
    compare.add_argument("--seeds", type=_positive_int, default=3, help="runs per loss. Default: 3")
    compare.add_argument("--learning-rate", type=_positive_float, default=3e-3, help="Adam. Default: 3e-3")
    compare.add_argument(
        "--output", default="keras-lossopt-report", help="report folder. Default: keras-lossopt-report"
    )
    _folds(
        compare,
        3,
        "folds of the cross-validation (train+val) that chooses the recommended loss; 1: the validation "
        "split. Default: 3",
    )

    search = commands.add_parser(
        "search",
        help="keras-tuner search over the loss, its parameters and the learning rate (with --space: also the "
        "optimizer and the regularization)",
    )
    _common(search, epochs=20)
    search.add_argument(
        "--space",
        type=_space,
        default=["loss"],
        help="the searched parts, comma-separated from loss, optimizer, regularization (the loss always): "
        "optimizer adds the family (adam, adamw, sgd, rmsprop, adagrad) and its parameters, regularization "
        "an L2 weight penalty, label smoothing and the rate of the model's Dropout layers; with more than "
        "one part the report measures what each adds. Default: loss",
    )
    search.add_argument("--tuner", default="bayesian", choices=("bayesian", "random", "hyperband"))
    search.add_argument("--max-trials", type=_positive_int, default=10, help="default: 10 (not used by hyperband)")
    search.add_argument(
        "--directory",
        default="keras-lossopt-search",
        help="where trials are kept; rerun to resume. Default: keras-lossopt-search",
    )
    search.add_argument(
        "--project-name",
        type=_folder_name,
        help="sub-folder of --directory. Default: the dataset name, followed by the --space parts after loss "
        "(digits-imbalanced-optimizer-regularization)",
    )
    search.add_argument("--overwrite", action="store_true", help="start afresh instead of resuming")
    search.add_argument(
        "--objective",
        help="metric to rank trials by (maximized; val_loss is refused). "
        "Default: val_macro_f1 (val_iou_score for segmentation)",
    )
    search.add_argument("--output", help="report folder. Default: <directory>/<project-name>-report")
    _folds(
        search,
        None,
        "rank trials by stratified k-fold cross-validation on train+val (1: the validation split). "
        "Default: 3 (1 with --tuner hyperband)",
    )

    advise_parser = commands.add_parser(
        "advise", help="rank the losses for your labels, with parameters from the data (nothing is trained)"
    )
    _data_arguments(advise_parser.add_argument_group("data"))
    advise_parser.add_argument("--seed", type=_seed, default=0, help="seed of the data split. Default: 0")
    _folds(advise_parser, 3, "check that every class has this many samples for a search's folds. Default: 3")
    advise_parser.add_argument(
        "--output", default="keras-lossopt-advice", help="report folder. Default: keras-lossopt-advice"
    )
    return parser


def _check_paths(args: argparse.Namespace) -> None:
    """The file and folder arguments, before anything is read or trained."""
    from keras_lossopt.cli import paths

    paths.check_data_argument(args.data, args.target)
    if getattr(args, "model", None) is not None:  # advise takes no model
        paths.check_model_path(args.model)
    if args.command == "search":
        paths.check_trials_directory(args.directory)
    if args.output is not None:
        paths.check_output_folder(args.output)


def _check_search_settings(args: argparse.Namespace, task: str, output: str) -> None:
    """The objective and the report folder of a search, once the task is known."""
    from keras_lossopt.cli.paths import DataError, check_output_folder
    from keras_lossopt.tuning._command import DEFAULT_METRIC_NAMES, check_logged_objective

    if args.objective is not None:
        metrics = DEFAULT_METRIC_NAMES[task]
        check_logged_objective(args.objective, [*(f"val_{m}" for m in metrics), "val_loss", "loss", *metrics])
    report = check_output_folder(output)
    trials = pathlib.Path(args.directory).expanduser().resolve()
    if report == trials or report in trials.parents:
        raise DataError(f"--output {output} would replace the search --directory {args.directory}; name another folder")


def _check_inputs(args: argparse.Namespace):
    """Every argument, path and the data, without TensorFlow; returns the dataset and the search project."""
    _check_paths(args)  # first, and before NumPy: a mistyped path costs only Python's start
    if args.command == "search":
        from keras_lossopt.cli.distributed import search_role

        args.role = search_role(overwrite=args.overwrite)  # keras-tuner's chief/worker variables

    import numpy as np

    from keras_lossopt.cli.data import load_data
    from keras_lossopt.cli.models import model_builder
    from keras_lossopt.cli.paths import DataError
    from keras_lossopt.tuning._command import check_labels, select_candidates

    dataset = load_data(args.data, target=args.target, task=args.task, seed=args.seed)
    if args.command == "search" and args.folds is None:
        args.folds = 1 if args.tuner == "hyperband" else 3
    if args.command == "search" and args.tuner == "hyperband" and args.folds > 1:
        raise DataError(
            f"--tuner hyperband continues each model from its checkpoint and takes a fixed validation split: "
            f"use --folds 1 with it, or --tuner bayesian with --folds {args.folds}"
        )
    if args.folds > 1:  # every class needs `folds` samples in train + val
        check_labels(np.concatenate([dataset.y_train, dataset.y_val]), dataset.task, folds=args.folds)
    if args.command == "advise":
        return dataset, None
    select_candidates(dataset.task, args.losses)
    if args.model is None:
        model_builder(dataset)  # the default model's own limits (the U-Net's even image sides)
    if args.command != "search":
        return dataset, None
    # Trials of different spaces do not compare, so each space has its own default project.
    project = args.project_name or "-".join([dataset.name.replace(os.sep, "_"), *args.space[1:]])
    args.output = args.output or os.path.join(args.directory, f"{project}-report")
    _check_search_settings(args, dataset.task, args.output)
    return dataset, project


@contextlib.contextmanager
def _stderr_held_back() -> Iterator[None]:
    """Sends what C++ libraries write to stderr (file descriptor 2) to a buffer; replays it on an error."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as buffer:
        os.dup2(buffer.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            buffer.seek(0)
            sys.stderr.write(buffer.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _start_tensorflow_quietly() -> None:
    """Imports Keras (and TensorFlow) without their C++ start-up lines, unless the user asked for them.

    TensorFlow 2.21 prints oneDNN, CUDA and CPU-feature lines through absl before logging is
    configured, whatever TF_CPP_MIN_LOG_LEVEL says, so they are held back at the file
    descriptor. TF_CPP_MIN_LOG_LEVEL=0 set by the user shows everything.
    """
    level = os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    quiet = level.strip() not in ("", "0") and "keras" not in sys.modules
    with _stderr_held_back() if quiet else contextlib.nullcontext():
        import keras

        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            tf.config.list_logical_devices()  # device discovery (CUDA) logs here, not in the first trial
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        # Each run builds a new model, so TensorFlow warns about retracing; expected here, not news.
        tf.get_logger().setLevel("ERROR")


def _run(args: argparse.Namespace, dataset, project: str | None) -> None:
    from keras_lossopt.cli.compare import run_compare
    from keras_lossopt.cli.models import model_builder
    from keras_lossopt.cli.search import run_search

    if args.command == "advise":
        from keras_lossopt.cli.advise import run_advise

        run_advise(dataset, folds=args.folds, output=args.output)
        return
    make_model, description = model_builder(dataset, args.model)
    if args.command == "compare":
        run_compare(
            dataset,
            make_model,
            description,
            loss_names=args.losses,
            seeds=args.seeds,
            epochs=args.epochs,
            batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            output=args.output,
            folds=args.folds,
        )
        return
    run_search(
        dataset,
        make_model,
        description,
        loss_names=args.losses,
        tuner_name=args.tuner,
        max_trials=args.max_trials,
        epochs=args.epochs,
        batch_size=args.batch_size,
        directory=args.directory,
        project_name=project,
        overwrite=args.overwrite,
        seed=args.seed,
        objective=args.objective,
        output=args.output,
        folds=args.folds,
        role=args.role,
        space=args.space,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Runs `keras-lossopt` with `argv` (default: the process arguments); returns the exit status."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_request:  # --help, or a usage error already printed in one line
        return int(exit_request.code or 0)
    try:
        dataset, project = _check_inputs(args)
        _start_tensorflow_quietly()
        _run(args, dataset, project)
    except (ValueError, FileNotFoundError, PermissionError) as error:
        if os.environ.get("KERAS_LOSSOPT_DEBUG"):
            raise
        # Our checks (DataError is a ValueError), the losses' and the tuner's argument checks say it in one line.
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        print(f"keras-lossopt: error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("keras-lossopt: interrupted; no report was written (rerun a search to resume it)", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
