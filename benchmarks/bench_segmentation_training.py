"""Mean IoU, boundary and topology scores of a small U-Net trained with each segmentation loss.

The same U-Net-style model (two down and two up levels) is trained for a fixed budget of
epochs on `load_shapes` (foreground classes covering under 5% of the pixels) or on the thin
structures of `load_vessels`, once per loss and seed, and scored on the test split with
`IoUScore` (mean IoU over the foreground classes, and over all classes including the
background), `HausdorffDistance` (HD95) and `SurfaceDice`, and on the foreground as one mask
with topology scores (`benchmarks.segmentation_topology`: clDice score, Betti errors).
Initial weights and data order depend only on the seed, so every loss starts from the same
weights for a given seed.

Run from the repository root:

    python -m benchmarks.bench_segmentation_training [--data shapes|vessels] [--losses "Dice;DiceCE"]
        [--seeds 3] [--epochs 20] [--num-images 240] [--batch-size 8]
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras
import numpy as np

from benchmarks.segmentation_topology import topology_scores
from keras_lossopt import losses
from keras_lossopt.datasets import load_shapes, load_vessels
from keras_lossopt.metrics import IoUScore, hausdorff_distance, surface_dice

SECTION = ("bench_segmentation_training", "Segmentation losses: mean IoU of a small U-Net on synthetic shapes")
VESSELS_SECTION = (
    "bench_segmentation_training_vessels",
    "Thin structures: overlap, boundary and topology losses on synthetic vessels",
)

LOSSES = {
    "cross-entropy": lambda: keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    "Dice": lambda: losses.DiceLoss(from_logits=True, per_image=False),
    "Dice, include_background=False": lambda: losses.DiceLoss(
        from_logits=True, per_image=False, include_background=False
    ),
    "Dice, log_dice=True": lambda: losses.DiceLoss(from_logits=True, per_image=False, log_dice=True),
    "DiceCE": lambda: losses.DiceCELoss(dice=losses.DiceLoss(from_logits=True, per_image=False), from_logits=True),
    "focal Tversky": lambda: losses.FocalTverskyLoss(
        alpha=0.3, beta=0.7, gamma=0.75, from_logits=True, per_image=False
    ),
    "Lovasz-softmax": lambda: losses.LovaszSoftmaxLoss(from_logits=True),
    # Boundary and topology losses next to the regional loss they are meant to complement; the
    # weights are the usual starting points, not tuned here (Kervadec et al. ramp theirs from 0.01).
    "Dice + clDice (SoftDiceClDice)": lambda: losses.SoftDiceClDiceLoss(from_logits=True, per_image=False),
    "DiceCE + 0.5 clDice": lambda: (
        losses.DiceCELoss(dice=losses.DiceLoss(from_logits=True, per_image=False), from_logits=True)
        + 0.5 * losses.SoftClDiceLoss(from_logits=True, per_image=False)
    ),
    "DiceCE + 0.01 HausdorffDT": lambda: (
        losses.DiceCELoss(dice=losses.DiceLoss(from_logits=True, per_image=False), from_logits=True)
        + 0.01 * losses.HausdorffDTLoss(from_logits=True)
    ),
    "DiceCE + 0.1 HausdorffER": lambda: (
        losses.DiceCELoss(dice=losses.DiceLoss(from_logits=True, per_image=False), from_logits=True)
        + 0.1 * losses.HausdorffERLoss(from_logits=True)
    ),
    "GeneralizedDice + 0.01 Boundary": lambda: (
        losses.GeneralizedDiceLoss(from_logits=True, per_image=False) + 0.01 * losses.BoundaryLoss(from_logits=True)
    ),
}


# Measured once with a per-epoch probe (seed 0, 15 epochs, same data and model); see the notes.
FAILURE_MODE = (
    "Why the overlap loss alone fails here (not a bug: `DiceLoss` matches a float64 NumPy implementation "
    "of MONAI's `DiceLoss(softmax=True, to_onehot_y=True)` in value to 1e-16 and in gradient, by central "
    "differences, to 1e-10, with and without the background, batch and per image, smoothing 1e-5 and 1). "
    "The network starts near uniform softmax outputs (0.25 per class), where each rare class's Dice is "
    "about 0.02 and its gradient is dominated by the false positives on the 96% background pixels, so the"
    " first updates push every foreground probability down everywhere. In a probe run (seed 0, 15 epochs,"
    " softmax statistics of 64 training images after each epoch) with the default Dice at Adam 3e-3, one "
    "epoch takes the mean probability of each foreground class on its own pixels to 4e-4 / 6e-2 / 0 and "
    "the softmax derivative p(1 - p) there to as little as 2e-5; by epoch 4 it is 0 in float32 and the "
    "loss stays at 0.755 = (3 + 1 - 0.981) / 4 (three empty classes and the background Dice 0.981) for "
    "the rest of training. Lowering the learning rate only delays it (1e-3 and 3e-4 collapse by epoch 7),"
    " and neither per-image counts nor smoothing 1 avoids it. `include_background=False` moves the "
    "collapse to the background channel (its probability goes to 0 and one foreground class takes over "
    "the background pixels: foreground IoU 0.45 at 15 epochs, seed 0; 0.005 with per-image counts); "
    "`log_dice=True`, whose gradient grows as 1/dice when a class's Dice falls, keeps the rare classes "
    "alive (0.61 in the probe run). A per-pixel term (DiceCE) or the Lovasz extension also keeps a "
    "gradient on every pixel."
)


def unet(input_shape, num_classes, width=8):
    """A two-level U-Net with `width` filters at the top; returns logits."""

    def block(x, filters):
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        return keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)

    inputs = keras.Input(input_shape)
    d1 = block(inputs, width)
    d2 = block(keras.layers.MaxPooling2D()(d1), 2 * width)
    bottom = block(keras.layers.MaxPooling2D()(d2), 4 * width)
    u2 = block(keras.layers.Concatenate()([keras.layers.UpSampling2D()(bottom), d2]), 2 * width)
    u1 = block(keras.layers.Concatenate()([keras.layers.UpSampling2D()(u2), d1]), width)
    return keras.Model(inputs, keras.layers.Conv2D(num_classes, 1)(u1))


def train_and_score(data, make_loss, seed, epochs, batch_size, jit_compile=True):
    keras.utils.set_random_seed(seed)
    model = unet(data.input_shape, data.num_classes)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss=make_loss(), jit_compile=jit_compile)
    model.fit(data.x_train, data.y_train, epochs=epochs, batch_size=batch_size, verbose=0)
    logits = model.predict(data.x_test, batch_size=64, verbose=0)
    scores = {}
    for key, include_background in (("foreground", False), ("all", True)):
        metric = IoUScore(num_classes=data.num_classes, include_background=include_background)
        metric.update_state(data.y_test, logits)
        scores[key] = float(metric.result())
    # Mean softmax probability of the true class on the foreground test pixels: near 0 when the
    # rare classes' softmax outputs have collapsed (and their gradient p(1 - p) with them).
    shifted = logits - logits.max(axis=-1, keepdims=True)
    probs = np.exp(shifted) / np.exp(shifted).sum(axis=-1, keepdims=True)
    labels = np.asarray(data.y_test).reshape(probs.shape[:-1]).astype(int)
    true_prob = np.take_along_axis(probs, labels[..., None], axis=-1)[..., 0]
    scores["p_true_fg"] = float(true_prob[labels > 0].mean())
    hd95 = np.asarray(hausdorff_distance(data.y_test, logits))
    defined = ~np.isnan(hd95)
    finite = hd95[defined & np.isfinite(hd95)]
    scores["hd95"] = float(finite.mean()) if finite.size else float("nan")
    scores["missed"] = float(np.mean(np.isinf(hd95[defined])))
    nsd = np.asarray(surface_dice(data.y_test, logits, tolerance=1.0))
    scores["nsd"] = float(np.nanmean(nsd))
    scores.update(topology_scores(labels > 0, logits.argmax(-1) > 0))
    return scores


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", choices=("shapes", "vessels"), default="shapes")
    parser.add_argument("--losses", default=None, help="names from LOSSES separated by semicolons (default: all)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--num-images", type=int, default=240)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--foreground-fraction", type=float, default=0.04)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--section", default=SECTION[0], help="docs/benchmarks.md section to write")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument(
        "--no-jit", action="store_true", help="compile without XLA (a compile costs 1-2 min per model on a busy CPU)"
    )
    args = parser.parse_args(argv)

    if args.data == "vessels":
        data = load_vessels(num_images=args.num_images, image_size=args.image_size, seed=0)
    else:
        data = load_shapes(
            num_images=args.num_images,
            image_size=args.image_size,
            num_classes=4,
            foreground_fraction=args.foreground_fraction,
            seed=0,
        )
    names = list(LOSSES) if args.losses is None else [name.strip() for name in args.losses.split(";")]
    unknown = [name for name in names if name not in LOSSES]
    if unknown:
        parser.error(f"unknown losses {unknown}; choose from {list(LOSSES)}")
    chosen = {name: LOSSES[name] for name in names}
    counts = data.class_counts("train")
    foreground_share = counts[1:].sum() / counts.sum()
    print(data.summary(), f"\nforeground share {foreground_share:.2%}", flush=True)
    results = {}
    start = time.perf_counter()
    for name, make_loss in chosen.items():
        results[name] = []
        for seed in range(args.seeds):
            t0 = time.perf_counter()
            scores = train_and_score(data, make_loss, seed, args.epochs, args.batch_size, not args.no_jit)
            results[name].append(scores)
            print(
                f"{name:31s} seed {seed}: fg mIoU {scores['foreground']:.4f}  mIoU {scores['all']:.4f}  "
                f"p(true | fg) {scores['p_true_fg']:.4f}  HD95 {scores['hd95']:.2f} (missed {scores['missed']:.2f})  "
                f"NSD {scores['nsd']:.3f}  clDice {scores['cldice']:.3f}  Betti0 err {scores['betti0_error']:.2f}  "
                f"({time.perf_counter() - t0:.0f} s)",
                flush=True,
            )
    elapsed = time.perf_counter() - start

    from benchmarks.report import markdown_table

    def fmt(values):
        values = [v for v in values if not np.isnan(v)]  # HD95 is undefined for a run that finds nothing
        if not values:
            return "n/a"
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.mean(values):.3f} ± {spread:.3f}"

    rows = []
    for name, runs in results.items():
        fg = [r["foreground"] for r in runs]
        rows.append(
            [
                name,
                fmt(fg),
                f"{min(fg):.3f} / {max(fg):.3f}",
                fmt([r["all"] for r in runs]),
                fmt([r["hd95"] for r in runs]),
                f"{statistics.mean(r['missed'] for r in runs):.2f}",
                fmt([r["nsd"] for r in runs]),
                fmt([r["cldice"] for r in runs]),
                fmt([r["betti0_error"] for r in runs]),
                fmt([r["betti1_error"] for r in runs]),
                fmt([r["p_true_fg"] for r in runs]),
            ]
        )
    body = markdown_table(
        [
            "loss",
            "foreground mean IoU (mean ± sd)",
            "min / max",
            "mean IoU incl. background",
            "HD95 (px)",
            "share missed",
            "NSD at 1 px",
            "clDice score",
            "Betti-0 error",
            "Betti-1 error",
            "mean p(true class) on foreground pixels",
        ],
        rows,
    )
    if args.data == "vessels":
        data_text = (
            f"Data: `load_vessels(num_images={args.num_images}, image_size={args.image_size}, seed=0)`: "
            f"{len(data.y_train)} train / {len(data.y_test)} test images of branching vessels 1-3 pixels wide "
            f"covering {foreground_share:.1%} of the training pixels."
        )
    else:
        data_text = (
            f"Data: `load_shapes(num_images={args.num_images}, image_size={args.image_size}, num_classes=4, "
            f"foreground_fraction={args.foreground_fraction}, seed=0)`: {len(data.y_train)} train / "
            f"{len(data.y_test)} test images, foreground classes (circle, rectangle, triangle) cover "
            f"{foreground_share:.1%} of the training pixels."
        )
    body += (
        f"\n\n{data_text} Model: a two-level U-Net (8-16-32 filters, "
        f"{unet(data.input_shape, data.num_classes).count_params():,} parameters), logits out, Adam 3e-3, "
        f"{args.epochs} epochs of batch {args.batch_size}, `jit_compile={not args.no_jit}`; seeds 0..{args.seeds - 1} "
        "(the seed sets the initial weights and the data order, shared by every loss). Scores on the test "
        "split: `IoUScore` (dataset-level counts); HD95 = `hausdorff_distance` per image and foreground "
        "class, averaged over the finite values, with the share of (image, class) pairs where a present "
        "class was missed entirely (infinite HD95); NSD = `surface_dice(tolerance=1.0)`; on the "
        "foreground as one mask, the clDice score and the Betti-0/1 errors of "
        "`benchmarks/segmentation_topology.py` (skeletons by `soft_skeleton` on the hard masks, the "
        "morphological skeleton rather than the authors' skimage thinning); the last column is the mean "
        "softmax probability of the true class on the foreground test pixels. All runs use the same "
        "optimizer and learning rate. Losses: Keras' `SparseCategoricalCrossentropy`; `DiceLoss` in three "
        "configurations: the default class set (background included), `include_background=False` (the "
        "MONAI practice for rare foreground) and `log_dice=True` (`-log(dice)`, the log-Dice of "
        "segmentation_models_pytorch's `log_loss=True`); `DiceCELoss`; "
        "`FocalTverskyLoss(alpha=0.3, beta=0.7, gamma=0.75)`; every Dice/Tversky/clDice term with batch "
        "counts (`per_image=False`); `LovaszSoftmaxLoss` (batch); the boundary and topology losses added to "
        "the regional loss they complement, with untuned weights (named in the row); all from logits. "
        f"Total time {elapsed / 60:.1f} min."
    )
    collapsed = [name for name, runs in results.items() if max(r["foreground"] for r in runs) == 0.0]
    if collapsed:
        probs = ", ".join(f"{name} {statistics.mean(r['p_true_fg'] for r in results[name]):.1e}" for name in collapsed)
        body += (
            f"\n\n{', '.join(collapsed)}: every seed ended at foreground IoU 0; the mean probability of the "
            f"true class on foreground pixels ended at {probs}."
        )
    if args.data == "shapes":
        body += "\n\n" + FAILURE_MODE
    print(body)
    if not args.no_write:
        from benchmarks.report import write_section

        section, title = args.section, SECTION[1] + ("" if args.section == SECTION[0] else f" ({args.epochs} epochs)")
        if args.data == "vessels" and args.section == SECTION[0]:
            section, title = VESSELS_SECTION
        write_section(
            section, title, body, "python -m benchmarks.bench_segmentation_training " + shlex.join(sys.argv[1:])
        )


if __name__ == "__main__":
    main()
