"""Robust-accuracy evaluation benchmark: PGD-20, APGD-CE and the AutoAttack ensemble, against ART.

Models: the small CNN of `benchmarks.bench_adversarial`, trained clean, fast (FGSM-RS) and
Madry (PGD-7) at `--eps` on the built-in 5,000 MNIST digits (4,000 train). The first
`--eval-samples` test images are attacked, L-inf at `--eps`:

* ours: PGD-20 (random start, step 2.5 * eps / 20), APGD-CE (100 iterations), and
  `evaluate_robustness(strength="standard")`: APGD-CE, APGD-T (9 targets), Square (5,000
  queries) in sequence on the survivors, with its sanity checks;
* independent: the same protocol with the Adversarial Robustness Toolbox's attacks on a
  `TensorFlowV2Classifier` of the same model: its APGD on the cross-entropy (100 iterations,
  first step 2 * eps), its APGD on the DLR loss targeted at the classes ranked 2..10 by the clean
  logits, then its Square Attack (5,000 queries, p_init 0.8), each on the images still standing;
  and ART's PGD-20 on the same batch for the speed comparison.

ART is a benchmark-only dependency (`pip install adversarial-robustness-toolbox`). Times are
wall-clock seconds on a shared machine, after one warm-up call for the PGD speed ratio.

    python -m benchmarks.bench_robust_evaluation                 # the documented run
    python -m benchmarks.bench_robust_evaluation --epochs 1 --eval-samples 40 --queries 50 --no-write   # smoke
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np

from benchmarks.bench_adversarial import train
from benchmarks.report import markdown_table, write_section
from keras_lossopt.adversarial import (
    AutoAttack,
    AutoProjectedGradientDescent,
    ProjectedGradientDescent,
    autoattack_attacks,
    evaluate_robustness,
)
from keras_lossopt.datasets import load_mnist


def correct(model, x, y) -> np.ndarray:
    return np.argmax(np.asarray(model.predict(x, batch_size=500, verbose=0)), axis=1) == y


def timed(function):
    start = time.perf_counter()
    out = function()
    return out, time.perf_counter() - start


def art_classifier(model):
    from art.estimators.classification import TensorFlowV2Classifier

    return TensorFlowV2Classifier(
        model=model,
        nb_classes=10,
        input_shape=tuple(model.input_shape[1:]),
        loss_object=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        clip_values=(0.0, 1.0),
    )


def art_standard(model, x, y, eps, queries, batch_size):
    """The AutoAttack standard protocol with ART's attacks, in sequence on the survivors."""
    from art.attacks.evasion import AutoProjectedGradientDescent as ArtAPGD
    from art.attacks.evasion import SquareAttack as ArtSquare

    classifier = art_classifier(model)
    standing = correct(model, x, y)
    after, seconds = {}, {}
    common = dict(norm=np.inf, eps=eps, eps_step=2 * eps, max_iter=100, nb_random_init=1, batch_size=batch_size,
                  verbose=False)  # fmt: skip

    def attack_survivors(name, run):
        start = time.perf_counter()
        index = np.flatnonzero(standing)
        if index.size:
            x_adv = run(x[index], y[index])
            standing[index[~correct(model, x_adv, y[index])]] = False
        after[name], seconds[name] = standing.mean(), time.perf_counter() - start

    apgd_ce = ArtAPGD(classifier, loss_type="cross_entropy", **common)
    attack_survivors("apgd_ce", lambda xs, ys: apgd_ce.generate(xs, y=np.eye(10)[ys]))
    apgd_t = ArtAPGD(classifier, loss_type="difference_logits_ratio", targeted=True, **common)

    def targeted(xs, ys):
        order = np.argsort(-np.asarray(model.predict(xs, verbose=0)), axis=1)
        out = xs.copy()
        left = np.ones(len(xs), bool)
        for rank in range(1, 10):
            index = np.flatnonzero(left)
            if not index.size:
                break
            x_adv = apgd_t.generate(xs[index], y=np.eye(10)[order[index, rank]])
            fooled = ~correct(model, x_adv, ys[index])
            out[index[fooled]] = x_adv[fooled]
            left[index[fooled]] = False
        return out

    attack_survivors("apgd_t", targeted)
    square = ArtSquare(classifier, norm=np.inf, eps=eps, max_iter=queries, p_init=0.8, nb_restarts=1,
                       batch_size=batch_size, verbose=False)  # fmt: skip
    attack_survivors("square", lambda xs, ys: square.generate(xs, y=np.eye(10)[ys]))
    return float(standing.mean()), after, seconds


def pgd20_speed(model, x, y, eps, seed, repeats=3):
    """Median wall and CPU seconds of our PGD-20 and ART's on the same batch, timed alternately.

    The machine is shared: timing the two at different moments compares the load, not the
    code. Each repetition runs ours then ART's; both are warmed up first (ours traces once).
    """
    from art.attacks.evasion import ProjectedGradientDescent as ArtPGD

    ours = ProjectedGradientDescent(eps, steps=20, seed=seed)
    art = ArtPGD(art_classifier(model), norm=np.inf, eps=eps, eps_step=2.5 * eps / 20, max_iter=20,
                 num_random_init=1, batch_size=len(x), verbose=False)  # fmt: skip
    one_hot = np.eye(10)[y]
    runs = {"ours": lambda: ours(model, x, y), "art": lambda: art.generate(x, y=one_hot)}
    for run in runs.values():
        run()
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            wall, cpu = time.perf_counter(), time.process_time()
            run()
            times[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    return {name: tuple(float(np.median([t[i] for t in values])) for i in (0, 1)) for name, values in times.items()}


def evaluate_model(name, model, x, y, args):
    eps = args.eps
    pgd = ProjectedGradientDescent(eps, steps=20, seed=args.seed)
    pgd(model, x, y)  # warm-up: trace once
    x_pgd, pgd_seconds = timed(lambda: pgd(model, x, y))
    apgd = AutoProjectedGradientDescent(eps, steps=100, seed=args.seed)
    x_apgd, apgd_seconds = timed(lambda: apgd(model, x, y))
    clean = correct(model, x, y)
    attacks = autoattack_attacks(eps, seed=args.seed)
    attacks[-1] = attacks[-1].__class__.from_config({**attacks[-1].get_config(), "queries": args.queries})
    ensemble = AutoAttack(eps, attacks=attacks, seed=args.seed)
    result, ours_seconds = timed(
        lambda: evaluate_robustness(model, (x, y), ensemble, batch_size=len(x), sanity_samples=args.sanity_samples)
    )
    row = {
        "model": name,
        "clean": clean.mean(),
        "pgd20": (clean & correct(model, x_pgd, y)).mean(),
        "pgd20_s": pgd_seconds,
        "apgd_ce": (clean & correct(model, x_apgd, y)).mean(),
        "apgd_ce_s": apgd_seconds,
        "ours": result["robust_accuracy"],
        "ours_s": ours_seconds,
        "ours_per_attack": result["per_attack_accuracy"],
        "ours_attack_s": result["attack_seconds"],
        "warnings": result.get("warnings", []),
    }
    if not args.no_art:
        row["art"], row["art_per_attack"], row["art_attack_s"] = art_standard(model, x, y, eps, args.queries, len(x))
        row["art_s"] = sum(row["art_attack_s"].values())
        speed = pgd20_speed(model, x, y, eps, args.seed)
        row["pgd20_s"], row["art_pgd20_s"] = speed["ours"][0], speed["art"][0]
        row["pgd20_cpu_s"], row["art_pgd20_cpu_s"] = speed["ours"][1], speed["art"][1]
    print(row, flush=True)
    return row


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--models", nargs="+", default=["fast", "madry", "clean"], choices=["clean", "fast", "madry"])
    parser.add_argument("--eval-samples", type=int, default=500)
    parser.add_argument("--queries", type=int, default=5000, help="Square queries (AutoAttack standard: 5000)")
    parser.add_argument("--sanity-samples", type=int, default=100)
    parser.add_argument("--train-steps", type=int, default=7, help="PGD steps of Madry training")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--warmup-epochs", type=float, default=2.0)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-art", action="store_true", help="skip the ART comparison")
    parser.add_argument("--no-write", action="store_true", help="print only; do not update docs/benchmarks.md")
    parser.add_argument("--section", default="adversarial_evaluation", help="section of docs/benchmarks.md to write")
    parser.add_argument("--pgd-speed-only", action="store_true", help="only time PGD-20, ours against ART's")
    args = parser.parse_args(argv)
    args.beta, args.jit = 6.0, False  # what bench_adversarial.train reads

    data = load_mnist(seed=args.seed, validation_split=0.0, test_split=0.2)
    x, y = data.x_test[: args.eval_samples], data.y_test[: args.eval_samples]
    start = time.perf_counter()
    if args.pgd_speed_only:
        pgd_speed_report(data, x, y, args, argv)
        return
    rows = []
    for method in args.models:
        model, _ = train(method, 0.0 if method == "clean" else args.eps, data, args)
        rows.append(evaluate_model(method, model, x, y, args))
        report(rows, args, len(x), time.perf_counter() - start, argv)  # after each model: a partial run still counts


def pgd_speed_report(data, x, y, args, argv) -> None:
    """PGD-20, ours against ART's, on each model's batch (the cost depends on the architecture, not the weights)."""
    lines = []
    for method in args.models:
        model, _ = train(method, 0.0 if method == "clean" else args.eps, data, args)
        speed = pgd20_speed(model, x, y, args.eps, args.seed, repeats=5)
        (ours_wall, ours_cpu), (art_wall, art_cpu) = speed["ours"], speed["art"]
        lines.append([method, f"{ours_wall:.2f} / {ours_cpu:.2f}", f"{art_wall:.2f} / {art_cpu:.2f}",
                      f"{art_wall / ours_wall:.1f}x / {art_cpu / ours_cpu:.1f}x"])  # fmt: skip
        print(lines[-1], flush=True)
    table = markdown_table(["model", "ours: wall / CPU (s)", "ART: wall / CPU (s)", "ART / ours: wall / CPU"], lines)
    body = (
        f"PGD-20 (L-inf eps {args.eps:g}, random start, step 2.5 * eps / 20) on one batch of {len(x)} MNIST test "
        "images, ours (`ProjectedGradientDescent`) against ART's `ProjectedGradientDescent` on a "
        "`TensorFlowV2Classifier` of the same model. Median of 5 runs that alternate ours and ART's, after one "
        "warm-up of each (ours traces its graph once); CPU time counts all threads of the process, so it is the "
        f"fairer number on this shared machine.\n\n{table}\n"
    )
    print(body)
    if not args.no_write:
        command = "python -m benchmarks.bench_robust_evaluation " + " ".join(argv or [])
        write_section(args.section, "PGD-20 speed: ours against ART (MNIST)", body, command.strip())


def report(rows, args, num_images, seconds, argv) -> None:
    def pct(v):
        return f"{100 * v:.1f}%"

    names = {"clean": "clean", "fast": "fast (FGSM-RS)", "madry": f"Madry (PGD-{args.train_steps})"}
    header = ["model", "clean", "PGD-20", "APGD-CE", "ours: standard (APGD-CE / +APGD-T / +Square)"]
    if not args.no_art:
        header += ["ART: same protocol (APGD-CE / +APGD-T / +Square)", "ours - ART", "PGD-20 time: ART / ours"]
    header += ["time (s): PGD-20 / APGD-CE / standard", "sanity warnings"]
    table_rows = []
    for r in rows:
        steps = " / ".join(pct(v) for v in r["ours_per_attack"].values())
        line = [
            names[r["model"]],
            pct(r["clean"]),
            pct(r["pgd20"]),
            pct(r["apgd_ce"]),
            f"**{pct(r['ours'])}** ({steps})",
        ]
        if not args.no_art:
            art_steps = " / ".join(pct(v) for v in r["art_per_attack"].values())
            line += [
                f"**{pct(r['art'])}** ({art_steps}; {r['art_s']:.0f} s)",
                f"{100 * (r['ours'] - r['art']):+.1f} points",
                f"{r['art_pgd20_s'] / r['pgd20_s']:.1f}x wall ({r['art_pgd20_s']:.2f} s / {r['pgd20_s']:.2f} s), "
                f"{r['art_pgd20_cpu_s'] / r['pgd20_cpu_s']:.1f}x CPU",
            ]
        attack_s = " + ".join(f"{v:.0f}" for v in r["ours_attack_s"].values())
        line += [f"{r['pgd20_s']:.2f} / {r['apgd_ce_s']:.1f} / {r['ours_s']:.0f} ({attack_s} + checks)",
                 str(len(r["warnings"]))]  # fmt: skip
        table_rows.append(line)
    table = markdown_table(header, table_rows)
    warnings_text = (
        "".join(f"\n* {names[r['model']]}: {message}" for r in rows for message in r["warnings"])
        or "\nNone of the sanity checks fired."
    )
    art_text = (
        ""
        if args.no_art
        else "ART (adversarial-robustness-toolbox, benchmark environment only): the same protocol with its own APGD "
        "(CE, then DLR targeted at the 9 runner-up classes) and Square implementations on a `TensorFlowV2Classifier` "
        "of the same model. "
    )
    art_pgd_text = "" if args.no_art else "; with ART, the median of 3 runs alternating ours and ART's, after a warm-up"
    body = (
        f"{num_images} test images of the built-in MNIST set (seed {args.seed}), L-inf eps {args.eps:g}; the small "
        f"CNN of `bench_adversarial` trained {args.epochs} epochs (clean, fast FGSM-RS, Madry PGD-{args.train_steps}; "
        f"4,000 images). Ours: `evaluate_robustness(model, data, AutoAttack(eps))`, i.e. "
        f'`strength="standard"` (APGD-CE 100 iterations, APGD-T on 9 targets, Square {args.queries} queries, in '
        f"sequence on the survivors; the cumulative accuracy after each attack in brackets), sanity checks on the "
        f"first {args.sanity_samples} images. {art_text}PGD-20 times are the second call on the "
        f"whole batch (the first traces){art_pgd_text}; APGD-CE's time is a first call (tracing included); the "
        f"standard time includes tracing its three attacks and the sanity checks. AutoAttack's published budget per "
        f"image is 100 + 9 x 100 gradient steps and 5,000 queries, as here (FAB-T not run). The machine was shared "
        f"with other jobs (wall times stretch). Whole run: {seconds / 60:.1f} min.\n\n"
        f"{table}\n\nSanity-check warnings:{warnings_text}\n"
    )
    print(body, flush=True)
    if not args.no_write:
        command = "python -m benchmarks.bench_robust_evaluation " + " ".join(argv or [])
        title = "Robust accuracy you can publish: AutoAttack" + ("" if args.no_art else " against ART") + " (MNIST)"
        write_section(args.section, title, body, command.strip())


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
