"""The diagnosis corpus: hundreds of seeded healthy and faulty training runs for the monitors' rules.

* `data.py`: the tasks (digits, breast cancer, the MNIST subset, synthetic classification
  and regression at several noise levels, tasks with a low ceiling, regression targets in
  the thousands, sequences; AUTOTRAINER's circle, blob and regression sets) and their
  trivial baselines;
* `models.py`: MLPs, a small CNN, small LSTM/GRU models;
* `space.py`: `RunSpec`, the healthy space, the fault families with their planted causes,
  the ported AUTOTRAINER/DeepDiagnosis cases, the split by seed;
* `runner.py`: one run with the default callbacks -> a record; many in parallel, cached;
* `analysis.py`: false-alarm rates with Wilson intervals, detections, causes ranked first.

Run it with `python -m benchmarks.bench_monitor --corpus` (docs/benchmarks.md).
"""
