"""Adapter: a `keras.random.SeedGenerator`'s stream, read, handed over and carried through loops.

A compiled attack function shared by several attacks draws from the generators it was
traced with; to keep each attack's own random stream, the caller lends them its states
before the call and takes them back after. A jitted JAX function gets the states as
arguments and returns the new ones, and a loop that draws at every iteration (Square)
carries the state as a loop variable, since an assignment inside a traced JAX loop body
would not reach the next iteration. Keras keeps a generator's stream in the variable
`SeedGenerator.state`, an attribute outside its documented API (checked with Keras
3.15.1; `tests/adversarial/test_survivors.py` fails if that changes).
"""

from __future__ import annotations

import keras

__all__: list[str] = []


def copy_random_states(sources, targets):
    """Sets each target `keras.random.SeedGenerator` to its source's state."""
    for source, target in zip(sources, targets):
        target.state.assign(source.state.value)


def generator_state(generator):
    """The current state of a `keras.random.SeedGenerator` (a tensor; inside a `StatelessScope`, its value there)."""
    return generator.state.value


def set_generator_state(generator, state):
    """Moves a `keras.random.SeedGenerator` to `state` (recorded, not applied, inside a `StatelessScope`)."""
    generator.state.assign(state)


def draw_with_state(generator, state, draw):
    """`(draw(), new_state)`: `draw` drawing from `generator` as if its state were `state`, statelessly.

    For loops: the state is a loop variable, so each iteration draws anew on every backend
    (a generator's assignment inside a traced JAX loop body would happen once, at tracing).
    """
    with keras.StatelessScope(state_mapping=[(generator.state, state)], initialize_variables=False) as scope:
        values = draw()
    return values, scope.get_current_value(generator.state)
