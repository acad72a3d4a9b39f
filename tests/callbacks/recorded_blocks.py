"""Writes tests/callbacks/data/recorded_blocks.npz: GradientMonitor's records on cases of
the problem bench, with the findings the monitor reported while training.

test_detection.py replays them through GradientDetector without Keras. Rerun after a
change to what is recorded (not after a change to the rules: the test checks them):

    python -m tests.callbacks.recorded_blocks
"""

from __future__ import annotations

import pathlib

import numpy as np

from tests.callbacks.problem_bench import CASES, run_case

PATH = pathlib.Path(__file__).parent / "data" / "recorded_blocks.npz"
CASE_IDS = ("deep_sigmoid_mlp", "huge_initial_weights", "huge_learning_rate_to_nan", "dead_relu_layer", "healthy_cnn")


def main() -> None:
    arrays = {}
    for case in CASES:
        if case.id not in CASE_IDS:
            continue
        run = run_case(case)
        history = run.monitor.history.as_dict()
        # Only findings made from the records (not from the loss or the final weights).
        findings = [f for f in run.monitor.findings if "loss" not in f.evidence]
        arrays[f"{case.id}:layers"] = history["layers"]
        arrays[f"{case.id}:steps"] = history["steps"]
        for field in ("grad_norm", "nonfinite_share", "weight_norm"):
            arrays[f"{case.id}:{field}"] = np.concatenate(
                [history[field], history[f"global_{field}"][:, None]], axis=1
            ).astype("float32")
        arrays[f"{case.id}:findings"] = np.asarray(
            [[f.kind, str(f.step), ",".join(f.layers)] for f in findings], dtype="U200"
        ).reshape(-1, 3)
    PATH.parent.mkdir(exist_ok=True)
    np.savez_compressed(PATH, **arrays)
    print(f"wrote {PATH} ({PATH.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
