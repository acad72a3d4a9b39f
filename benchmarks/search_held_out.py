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
from keras_lossopt.tuning import advise

#: The advisor's first pick may trail the best fixed loss in hindsight by this much (issue 24).
PICK_TARGET = 0.02
FIRST_SEED = 3
#: The share of empty masks from which the advisor put DiceCE, then CE, first until these runs.
EMPTY_MASK_RULE_SHARE = 0.5
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
    # Added after `shapes-empty60` refuted the empty-mask rule, to judge the order without it on a set
    # it was not changed on: another draw (data seed 2), foreground 15%, half the images empty (the old
    # rule's threshold).
    "shapes-fg15-empty50": (
        lambda: with_empty_images(
            load_dataset("shapes", num_images=160, image_size=48, foreground_fraction=0.15, seed=2), 0.5, seed=2
        ),
        20,
        0,
        3,
        8,
    ),
    # Added after `shapes-fg15-empty50` refuted the order without the rule and the object-share rule
    # replaced it (DiceCE first when the objects cover 10% or more of the images that hold them), to judge
    # that rule where it was not set: denser vessels (about 16% foreground, data seed 3) ...
    "vessels-dense": (
        lambda: load_dataset("vessels", num_images=160, image_size=48, max_vessels=5, seed=3),
        20,
        0,
        3,
        8,
    ),
    # ... and large shapes in 40% of the images (9% of all pixels, 22% of the images that hold them).
    "shapes-fg25-empty60": (
        lambda: with_empty_images(
            load_dataset("shapes", num_images=160, image_size=48, foreground_fraction=0.25, seed=3), 0.6, seed=3
        ),
        20,
        0,
        3,
        8,
    ),
    # Declared before they ran, to judge where between 6% and 11% the threshold (10%) belongs: two sets
    # whose objects cover 8-10% of the images (Lovasz first), shapes and vessels, one just above (DiceCE
    # first), and one at another image size. The advisor passes on a set when its first pick's mean is
    # within PICK_TARGET of the best fixed loss' mean or in the tie of the command's paired one-SE rule.
    # Shapes at foreground 8% (data seed 4): objects cover 7.9% of the images; Lovasz first.
    "shapes-fg08": (
        lambda: load_dataset("shapes", num_images=160, image_size=48, foreground_fraction=0.08, seed=4),
        20,
        0,
        3,
        8,
    ),
    # One or two vessel trees per image (data seed 4): 9.2%; Lovasz first.
    "vessels-two": (
        lambda: load_dataset("vessels", num_images=160, image_size=48, max_vessels=2, seed=4),
        20,
        0,
        3,
        8,
    ),
    # Shapes at foreground 11% (data seed 4): 10.8%, just above the threshold; DiceCE first.
    "shapes-fg11": (
        lambda: load_dataset("shapes", num_images=160, image_size=48, foreground_fraction=0.11, seed=4),
        20,
        0,
        3,
        8,
    ),
    # Another image size (every set above is 48x48): 64x64 shapes, foreground 13% (data seed 5): 12.5%;
    # DiceCE first.
    "shapes-64": (
        lambda: load_dataset("shapes", num_images=160, image_size=64, foreground_fraction=0.13, seed=5),
        20,
        0,
        3,
        8,
    ),
    # Declared after those four passed, before it ran, with the same criterion: another class count (every
    # set above has three foreground classes or one): five shape classes at foreground 8% (data seed 6):
    # 8.0%; Lovasz first.
    "shapes-5class": (
        lambda: load_dataset("shapes", num_images=160, image_size=48, num_classes=6, foreground_fraction=0.08, seed=6),
        20,
        0,
        3,
        8,
    ),
}


def current_first_pick(loader) -> tuple[str, float]:
    """The advisor's first pick now, on the labels a configuration's runs were advised on, and the share
    of foreground pixels in the images that hold foreground (what the advisor's segmentation order reads)."""
    data = loader()
    labels = np.concatenate([data.y_train, data.y_val])
    holding = labels[labels.reshape(len(labels), -1).any(axis=1)]
    return advise(labels, data.task, num_classes=data.num_classes).first.candidate, float(np.mean(holding > 0))


def describe_configuration(record, current_first=None, object_share=None) -> str:
    """One note: best fixed loss, the advisor's first pick and its gap, and the command's tie rule.

    `current_first` is the advisor's first pick now, when it differs from the one the runs recorded
    (the order was changed after seeing them, so they no longer judge it).
    """
    scores = {name: v["scores"] for name, v in record["fixed"].items()}
    means = {name: float(np.mean(s)) for name, s in scores.items()}
    best = max(means, key=means.get)
    first = record["advice"][0]
    gap = means[first] - means[best]
    difference, error = paired_difference(scores[best], scores[first])
    seeds = f"seeds {record['first_seed']}-{record['first_seed'] + record['seeds'] - 1}"
    rule = recommend(scores, units="seeds")
    if rule.tied == (first,):
        standing = "the first pick leads"
    else:
        standing = f"the first pick is {'in' if first in rule.tied else 'outside'} the tie"
    objects = "" if object_share is None else f"; objects cover {100 * object_share:.1f}% of the images that hold them"
    return (
        f"- `{record['name']}` ({record['description']}, {record['epochs']} epochs, batch {record['batch_size']}, "
        f"{seeds}; labels: {record['profile']}{objects}): best fixed in hindsight {best} {means[best]:.3f} ± "
        f"{np.std(scores[best]):.3f}; advisor's first pick {first} {means[first]:.3f} ± {np.std(scores[first]):.3f} "
        f"({gap:+.3f}; target >= -{PICK_TARGET}: {'met' if gap >= -PICK_TARGET else 'NOT met'}; paired over the "
        f"seeds it trails by {difference:.3f}, standard error {error:.3f}). Tie rule (the command's): "
        f"{rule.describe(3)}; {standing}. Verdict (within {PICK_TARGET} or in the tie): "
        f"{'pass' if gap >= -PICK_TARGET or first in rule.tied else 'FAIL'}."
        + (
            f" The advisor now ranks {current_first} first here ({means[current_first]:.3f}, "
            f"{means[current_first] - means[best]:+.3f}): it was changed "
            "after these runs, so they no longer judge it."
            if current_first not in (None, first)
            else ""
        )
    )


def merge_seeds(results):
    """One record per configuration: the runs of one configuration at consecutive seed ranges joined."""
    merged = {}
    for record in sorted(results, key=lambda r: (r["name"], r["first_seed"])):
        if record["name"] not in merged:
            merged[record["name"]] = {**record, "fixed": {k: dict(v) for k, v in record["fixed"].items()}}
            continue
        joined = merged[record["name"]]
        if (
            record["first_seed"] != joined["first_seed"] + joined["seeds"]
            or record["fixed"].keys() != joined["fixed"].keys()
        ):
            raise ValueError(f"{record['name']}: runs with overlapping or gapped seeds, or other losses")
        for name, v in record["fixed"].items():
            joined["fixed"][name] = {key: joined["fixed"][name][key] + v[key] for key in ("scores", "seconds")}
        joined["seeds"] += record["seeds"]
    order = list(dict.fromkeys(r["name"] for r in results))
    return [merged[name] for name in order]


def fixed_means(fixed: dict) -> tuple[dict[str, float], str]:
    """Each fixed loss' mean score over the seeds, and the loss with the best mean (in hindsight)."""
    means = {name: float(np.mean(v["scores"])) for name, v in fixed.items()}
    return means, max(means, key=means.get)


def assemble_held_out(results, command, loaders=None) -> str:
    """Writes the held-out section of docs/benchmarks.md from fixed-loss records; returns its body.

    `loaders` (configuration name -> data loader) lets the notes say where the advisor's first pick
    has changed since the runs.
    """
    rows, notes = [], []
    for record in merge_seeds(results):
        fixed = record["fixed"]
        means, best = fixed_means(fixed)
        first = record["advice"][0]
        loader = (loaders or {}).get(record["name"])
        now, object_share = current_first_pick(loader) if loader else (first, None)
        for name, v in sorted(fixed.items(), key=lambda item: -means[item[0]]):
            label = (
                name
                + (" **(best in hindsight)**" if name == best else "")
                + (" *(advisor's first pick)*" if name == first == now else "")
                + (" *(advisor's first pick when run)*" if name == first != now else "")
                + (" *(advisor's first pick now)*" if name == now != first else "")
            )
            shown = " ".join(f"{score:.3f}" for score in v["scores"])
            rows.append([record["name"], label, f"{means[name]:.3f} ± {np.std(v['scores']):.3f}", shown])
        notes.append(describe_configuration(record, now, object_share))
    intro = (
        "The advisor's segmentation order (`keras_lossopt.tuning.advisor`) was set from the fixed-loss rows of "
        "`shapes` and `vessels` at training seeds 0-2 in the section above. These runs judge it where it was not "
        "set, all at training seeds 3-5 with the same U-Net, Adam(0.003) and budget (160 images of 48x48 pixels: "
        "112 train / 24 validation / 24 test; 20 epochs of batch 8), every default candidate fixed with the "
        "advisor's parameters, scored by test mean IoU (`IoUScore`, background included, dataset-level counts): "
        "`shapes` and `vessels` themselves (the same images, new seeds); `shapes-fg15`, another draw (data seed 1) "
        "of `load_shapes` with foreground 15% (the order was set at 6%); `vessels-one`, another draw of "
        "`load_vessels` with one vessel tree per image (6% foreground instead of 11%); `shapes-empty60`, another "
        "draw of `shapes` at 6% with 60% of the images of every split replaced by shape-free backgrounds "
        "(`benchmarks.search_held_out.with_empty_images`), which tests the advisor's empty-mask rule as it was "
        f"(DiceCE, then CE, first when at least {EMPTY_MASK_RULE_SHARE:.0%} of the masks are empty); and "
        "`shapes-fg15-empty50` (data seed 2, foreground 15%, half the images empty, seeds 3-8), added after "
        "`shapes-empty60` refuted that rule and the rule was removed, to judge the order without it; it refuted "
        "that too, and the order now reads how much of the images that hold foreground the objects cover "
        "(`OBJECT_SHARE_FOR_DICE_CE`: DiceCE first from 10%, Lovasz first below), a rule set after seeing all of "
        "the runs above and judged on the last two, added after it: `vessels-dense` (data seed 3, up to five "
        "vessel trees, 16% foreground) and `shapes-fg25-empty60` (data seed 3, foreground 25% in the 40% of "
        "the images that hold shapes). Four more were declared before they ran, with the threshold unchanged, to "
        "judge where it belongs and one image size not tried: `shapes-fg08` (data seed 4, foreground 8%: objects "
        "cover 7.9% of the images that hold them), `vessels-two` (data seed 4, one or two vessel trees: 9.2%), "
        "`shapes-fg11` (data seed 4, foreground 11%: 10.8%) and `shapes-64` (data seed 5, 64x64 pixels, "
        "foreground 13%: 12.5%); then, after those passed, `shapes-5class` (data seed 6, five shape classes, "
        "foreground 8%: 8.0%). Rows mark the advisor's first pick when the runs were made and, where "
        "it has changed since, its pick now (the notes say so; those runs no longer judge it). "
        f"Target: the first pick within {PICK_TARGET} mean IoU of the best fixed loss in "
        "hindsight; the notes' verdict also passes a first pick in the tie. Ties: the one-standard-error rule of "
        "`keras-lossopt compare` paired over the seeds. The runs used nice 15 (the last five nice 10) on the "
        "shared 2-core machine beside other sessions' work (load 3-9; about 4.5 min per 48x48 configuration); "
        "IoU does not depend on the load."
    )
    header = ["configuration", "loss", "test mean IoU (mean ± sd over seeds)", "per seed"]
    body = "\n".join([intro, "", markdown_table(header, rows), "", *notes])
    write_section(*SECTION, body, command)
    return body
