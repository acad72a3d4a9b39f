"""Held-out segmentation runs of `benchmarks.bench_search`: the advisor's order judged where it was not set.

The advisor's segmentation order was set from the fixed-loss rows of `shapes` and `vessels`
at seeds 0-2 (docs/benchmarks.md, "Segmentation loss search at a deciding budget"). These
configurations are new image draws (data seed 1) with another foreground share or many
empty masks, trained at seeds 3-5 with the same model, optimizer and budget, fixed losses
only:

    python -m benchmarks.bench_search --held-out --datasets shapes-fg15 --json fg15.json
    python -m benchmarks.bench_search --assemble fg15.json ...
"""

from __future__ import annotations

import dataclasses

import numpy as np

from benchmarks.report import markdown_table, write_section
from keras_lossopt.cli.recommendation import paired_difference, recommend
from keras_lossopt.datasets import load_dataset
from keras_lossopt.tuning.advisor import EMPTY_MASK_SHARE

#: The advisor's first pick may trail the best fixed loss in hindsight by this much (issue 24).
PICK_TARGET = 0.02
FIRST_SEED = 3
SECTION = ("bench_search_segmentation_held_out", "Segmentation advisor on held-out runs")


def with_empty_images(dataset, share, *, seed, noise=0.25):
    """`dataset` with `share` of the images of every split replaced by shape-free images (all background).

    The replacements are drawn as `make_shapes` draws its backgrounds (a random colour, a linear
    gradient, Gaussian noise of the same scale), so an empty image differs from the others only
    by having no shape.
    """
    rng = np.random.default_rng(seed)
    splits = {}
    for split in ("train", "val", "test"):
        x, y = getattr(dataset, f"x_{split}").copy(), getattr(dataset, f"y_{split}").copy()
        size = x.shape[1]
        rows, cols = np.mgrid[0:size, 0:size].astype(np.float32)
        for n in rng.permutation(len(x))[: round(share * len(x))]:
            slope = rng.normal(scale=0.15, size=(2, 3)) / size
            background = rng.uniform(0.3, 0.6, size=3) + rows[..., None] * slope[0] + cols[..., None] * slope[1]
            x[n] = background + rng.normal(scale=noise, size=background.shape)
            y[n] = 0
        splits[f"x_{split}"], splits[f"y_{split}"] = x, y
    return dataclasses.replace(dataset, name=f"{dataset.name}-empty", **splits)


# name -> (loader, epochs, search trials (none: fixed losses only), seeds, batch size); the budget of
# the `shapes`/`vessels` rows the order was set on: 160 images of 48x48, 20 epochs of batch 8.
HELD_OUT = {
    # Foreground 15% of the pixels (the order was set at 6%).
    "shapes-fg15": (
        lambda: load_dataset("shapes", num_images=160, image_size=48, foreground_fraction=0.15, seed=1),
        20,
        0,
        3,
        8,
    ),
    # One vessel tree per image: a sparser foreground than the up to three trees of `vessels`.
    "vessels-one": (
        lambda: load_dataset("vessels", num_images=160, image_size=48, max_vessels=1, seed=1),
        20,
        0,
        3,
        8,
    ),
    # 60% of the images without foreground: the advisor's empty-mask rule puts DiceCE, then CE, first.
    "shapes-empty60": (
        lambda: with_empty_images(
            load_dataset("shapes", num_images=160, image_size=48, foreground_fraction=0.06, seed=1), 0.6, seed=1
        ),
        20,
        0,
        3,
        8,
    ),
}


def describe_configuration(record) -> str:
    """One note: best fixed loss, the advisor's first pick and its gap, and the command's tie rule."""
    scores = {name: v["scores"] for name, v in record["fixed"].items()}
    means = {name: float(np.mean(s)) for name, s in scores.items()}
    best = max(means, key=means.get)
    first = record["advice"][0]
    gap = means[first] - means[best]
    difference, error = paired_difference(scores[best], scores[first])
    seeds = f"seeds {record['first_seed']}-{record['first_seed'] + record['seeds'] - 1}"
    rule = recommend(scores, units="seeds")
    tied = first in rule.tied
    return (
        f"- `{record['name']}` ({record['description']}, {record['epochs']} epochs, batch {record['batch_size']}, "
        f"{seeds}; labels: {record['profile']}): best fixed in hindsight {best} {means[best]:.3f} ± "
        f"{np.std(scores[best]):.3f}; advisor's first pick {first} {means[first]:.3f} ± {np.std(scores[first]):.3f} "
        f"({gap:+.3f}; target >= -{PICK_TARGET}: {'met' if gap >= -PICK_TARGET else 'NOT met'}; paired over the "
        f"seeds it trails by {difference:.3f}, standard error {error:.3f}). Tie rule (the command's): "
        f"{rule.describe(3)}; the first pick is {'in' if tied else 'outside'} the tie."
    )


def assemble_held_out(results, command) -> str:
    """Writes the held-out section of docs/benchmarks.md from fixed-loss records; returns its body."""
    rows, notes = [], []
    for record in results:
        fixed = record["fixed"]
        means = {name: float(np.mean(v["scores"])) for name, v in fixed.items()}
        best = max(means, key=means.get)
        first = record["advice"][0]
        for name, v in sorted(fixed.items(), key=lambda item: -means[item[0]]):
            label = (
                name
                + (" **(best in hindsight)**" if name == best else "")
                + (" *(advisor's first pick)*" if name == first else "")
            )
            shown = " ".join(f"{score:.3f}" for score in v["scores"])
            rows.append([record["name"], label, f"{means[name]:.3f} ± {np.std(v['scores']):.3f}", shown])
        notes.append(describe_configuration(record))
    intro = (
        "The advisor's segmentation order (`keras_lossopt.tuning.advisor`) was set from the fixed-loss rows of "
        "`shapes` and `vessels` at seeds 0-2 in the section above. These runs judge it where it was not set: new "
        "image draws (data seed 1) of other configurations, training seeds 3-5, the same U-Net, Adam(0.003) and "
        "budget (160 images of 48x48 pixels: 112 train / 24 validation / 24 test; 20 epochs of batch 8); every "
        "default candidate fixed with the advisor's parameters, test mean IoU (`IoUScore`, background included, "
        "dataset-level counts). `shapes-fg15`: `load_shapes(foreground_fraction=0.15)` (the order was set at "
        "0.06); `vessels-one`: `load_vessels(max_vessels=1)` (one vessel tree per image, the order was set on up "
        "to three); `shapes-empty60`: `shapes` at 0.06 with 60% of the images of every split replaced by "
        "shape-free backgrounds (`benchmarks.search_held_out.with_empty_images`), which tests the empty-mask rule "
        f"(per-pixel DiceCE, then CE, first when at least {EMPTY_MASK_SHARE:.0%} of the masks are empty). Target: "
        f"the first pick within {PICK_TARGET} mean IoU of the best fixed loss in hindsight. Ties: the "
        "one-standard-error rule of `keras-lossopt compare` paired over the seeds. The runs used nice 15 on the "
        "shared 2-core machine beside other sessions' work; IoU does not depend on the load."
    )
    header = ["configuration", "loss", "test mean IoU (mean ± sd over seeds)", "per seed"]
    body = "\n".join([intro, "", markdown_table(header, rows), "", *notes])
    write_section(*SECTION, body, command)
    return body
