"""The peer side of `benchmarks.bench_lovasz_peer`: segmentation_models_pytorch's Lovasz and Dice.

Runs in a separate Python environment that has torch and segmentation-models-pytorch (never
a dependency of keras-lossopt), started once by the benchmark and driven over stdin: each
line `round` times `number` forward+backward steps of smp's `LovaszLoss` and `DiceLoss`
(multiclass, from logits: both apply the softmax) on the benchmark's batch and answers one
JSON line of milliseconds per step, wall and CPU time; `quit` ends it. Logits, because smp's
multiclass `LovaszLoss` applies a softmax whatever its `from_logits` says (smp 0.6.0).

    python benchmarks/lovasz_peer_worker.py BATCH.npz THREADS NUMBER
"""

from __future__ import annotations

import json
import sys
import time


def main(argv):
    import numpy as np
    import segmentation_models_pytorch as smp
    import torch

    path, threads, number = argv[0], int(argv[1]), int(argv[2])
    torch.set_num_threads(threads)
    batch = np.load(path)
    # smp takes channels first; the copy is made once, outside the timed steps.
    logits = torch.tensor(np.ascontiguousarray(batch["logits"].transpose(0, 3, 1, 2)))
    labels = torch.tensor(batch["labels"].astype("int64"))
    functions = {
        "lovasz": smp.losses.LovaszLoss("multiclass", per_image=False),
        "dice": smp.losses.DiceLoss("multiclass", from_logits=True),
    }

    def step(loss):
        y_pred = logits.clone().requires_grad_(True)
        value = loss(y_pred, labels)
        value.backward()
        return float(value.detach()), y_pred.grad

    values = {name: step(loss)[0] for name, loss in functions.items()}  # warm-up
    print(json.dumps({"ready": True, "torch": torch.__version__, "smp": smp.__version__, "values": values}))
    sys.stdout.flush()
    for line in sys.stdin:
        if line.strip() == "quit":
            break
        result = {}
        for name, loss in functions.items():
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(number):
                step(loss)
            result[name] = {
                "wall_ms": 1e3 * (time.perf_counter() - wall) / number,
                "cpu_ms": 1e3 * (time.process_time() - cpu) / number,
            }
        print(json.dumps(result))
        sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1:])
