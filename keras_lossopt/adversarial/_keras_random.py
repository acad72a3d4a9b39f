"""Adapter: handing a `keras.random.SeedGenerator`'s stream from one generator to another.

A compiled attack function shared by several attacks draws from the generators it was
traced with; to keep each attack's own random stream, the caller lends them its states
before the call and takes them back after. Keras keeps a generator's stream in the
variable `SeedGenerator.state`, an attribute outside its documented API (checked with
Keras 3.15.1; `tests/adversarial/test_survivors.py` fails if that changes).
"""

from __future__ import annotations

__all__: list[str] = []


def copy_random_states(sources, targets):
    """Sets each target `keras.random.SeedGenerator` to its source's state."""
    for source, target in zip(sources, targets):
        target.state.assign(source.state.value)
