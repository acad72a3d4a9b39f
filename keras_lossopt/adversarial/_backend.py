"""Adapter: the little the attacks need from each Keras backend, in one place.

Everything else in `keras_lossopt.adversarial` is `keras.ops` and runs on TensorFlow, JAX
and PyTorch alike. What differs between backends is:

* the input gradient: `tf.GradientTape` on TensorFlow, `jax.value_and_grad` on JAX,
  `torch.autograd.grad` on PyTorch (`value_and_input_gradient`);
* the compiler: a `tf.function` on TensorFlow, `jax.jit` on JAX, eager on PyTorch
  (`compile_attack_function`). A jitted JAX function cannot read Keras variables (it would
  bake their values in as constants, and a later training step would attack stale weights)
  nor assign them; it gets the model's variables and the seed generators' states as
  arguments inside a public `keras.StatelessScope` and hands the new seed states back.

The functions are public Keras / TensorFlow / JAX / PyTorch API; the module is an adapter
because it is the one place that knows the backends apart (`tests/adversarial` runs on all
three in CI).
"""

from __future__ import annotations

import sys

import keras
from keras import ops

from keras_lossopt.adversarial._keras_random import generator_state, set_generator_state

__all__: list[str] = []


def backend() -> str:
    """The name of the Keras backend in use."""
    return keras.backend.backend()


def is_tf_dataset(data) -> bool:
    """Whether `data` is a `tf.data.Dataset` (without importing TensorFlow: no dataset exists before it loads)."""
    tf = sys.modules.get("tensorflow")
    return tf is not None and hasattr(tf, "data") and isinstance(data, tf.data.Dataset)


def value_and_input_gradient(function, x):
    """`(aux, gradient)`: `function(x) -> (total, aux)` and the gradient of the scalar `total` in `x`.

    Args:
        function: maps the float batch `x` to `(total, aux)`; `total` a scalar to
            differentiate, `aux` any structure of tensors returned alongside.
        x: the float input batch.

    Returns:
        `aux` (no gradient attached) and `d total / d x`, or None where the backend finds
        no path from `x` to `total` (TensorFlow's None gradient; on PyTorch an output that
        does not require a gradient). JAX has no such case: a cut path gives zeros.
    """
    name = backend()
    if name == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            tape.watch(x)
            total, aux = function(x)
        return aux, tape.gradient(total, x)
    if name == "jax":
        import jax

        (_, aux), gradient = jax.value_and_grad(function, has_aux=True)(x)
        return aux, gradient
    if name == "torch":
        import torch

        with torch.enable_grad():
            leaf = x.detach().requires_grad_(True)
            total, aux = function(leaf)
            if not total.requires_grad:
                gradient = None
            else:
                (gradient,) = torch.autograd.grad(total, leaf, allow_unused=True)
        return keras.tree.map_structure(_detached, aux), gradient
    raise NotImplementedError(f"The attacks support the TensorFlow, JAX and PyTorch backends, not {name!r}.")


def is_traced(x) -> bool:
    """Whether `x` is a symbolic value being traced (a TensorFlow graph, a JAX tracer), not a concrete one."""
    name = backend()
    if name == "tensorflow":
        import tensorflow as tf

        return not tf.executing_eagerly()
    if name == "jax":
        import jax

        return isinstance(x, jax.core.Tracer)
    return False


def _detached(value):
    return value.detach() if hasattr(value, "detach") else value


def compile_attack_function(function, model_ref, generators, signature=None):
    """`function` compiled for this backend; it may read `model_ref()`'s variables and draw from `generators`.

    Args:
        function: `function(*tensors)`, graph code (no Python branches on tensor values).
        model_ref: a weak reference to the model whose variables the function reads.
        generators: the `keras.random.SeedGenerator`s the function draws from.
        signature: optional callable `signature(tf) -> input_signature` for a TensorFlow
            function that must never retrace (batch dimensions `None`); ignored elsewhere.

    Returns:
        A callable with the arguments of `function`. On TensorFlow a `tf.function`
        (`reduce_retracing=True` without a signature); on JAX a `jax.jit` of the function
        with the variables passed in (one compilation per input shape); on PyTorch the
        function itself (eager, as Keras' own torch training).
    """
    name = backend()
    if name == "tensorflow":
        import tensorflow as tf

        if signature is not None:
            return tf.function(function, input_signature=signature(tf))
        return tf.function(function, reduce_retracing=True)
    if name == "jax":
        return _jax_compiled(function, model_ref, generators)
    return function


def _jax_compiled(function, model_ref, generators):
    import jax

    states = [generator.state for generator in generators]

    def stateless(values, args):
        variables = model_ref().variables + states
        with keras.StatelessScope(state_mapping=list(zip(variables, values))) as scope:
            out = function(*args)
        return out, [scope.get_current_value(state) for state in states]

    jitted = jax.jit(stateless)

    def call(*args):
        values = [variable.value for variable in model_ref().variables] + [generator_state(g) for g in generators]
        out, new_states = jitted(values, args)
        for generator, state in zip(generators, new_states):
            if state is not None:
                set_generator_state(generator, state)
        return out

    return call


def eager_function(function):
    """A one-off compiled call (`AutoProjectedGradientDescent.history`): `tf.function` on TensorFlow, else eager."""
    if backend() == "tensorflow":
        import tensorflow as tf

        return tf.function(function)
    return function


def assert_within(x, low, high, message):
    """Raises with `message` when `x` leaves `[low, high]`, as far as the backend's step can raise.

    TensorFlow: `tf.debugging` assertions (`InvalidArgumentError` in a graph; XLA compiles them
    away). PyTorch runs eagerly: a `ValueError`. JAX: a `ValueError` on concrete values; a
    jitted step cannot raise, as under XLA.
    """
    name = backend()
    if name == "tensorflow":
        import tensorflow as tf

        tf.debugging.assert_greater_equal(ops.min(x), ops.cast(low, x.dtype), message=message)
        tf.debugging.assert_less_equal(ops.max(x), ops.cast(high, x.dtype), message=message)
        return
    if is_traced(x):
        return
    if float(ops.convert_to_numpy(ops.min(x))) < low or float(ops.convert_to_numpy(ops.max(x))) > high:
        raise ValueError(message)


def replicas_in_sync() -> int:
    """The replicas a `tf.distribute` strategy runs (Keras scales losses by 1 / replicas); 1 elsewhere."""
    if backend() != "tensorflow":
        return 1
    import tensorflow as tf

    return tf.distribute.get_strategy().num_replicas_in_sync


def adversarial_train_step(model, args, adversarial_batch, adversarial_loss, track_loss):
    """`AdversarialModel.train_step` on this backend: the attack, then one optimizer step on the loss.

    Args:
        model: the `AdversarialModel` (a `keras.Model` with an optimizer).
        args: `train_step`'s arguments: `(data,)`, or `(state, data)` on JAX.
        adversarial_batch: `(x, y) -> x_adv`, graph code (the training attack).
        adversarial_loss: `(x, x_adv, y, sample_weight) -> (loss, y_pred_adv)` in training mode.
        track_loss: `(loss, x)`: updates the logged loss.

    Returns:
        The logs (and on JAX the new state), as Keras' own `train_step` on this backend.
    """
    name = backend()
    if name == "jax":
        return _jax_train_step(model, *args, adversarial_batch, adversarial_loss, track_loss)
    (data,) = args
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    x_adv = ops.stop_gradient(adversarial_batch(x, y))
    variables = model.trainable_variables
    if name == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss, y_pred_adv = adversarial_loss(x, x_adv, y, sample_weight)
            track_loss(loss, x)
            scaled_loss = model.optimizer.scale_loss(loss)
        model.optimizer.apply(tape.gradient(scaled_loss, variables), variables)
    elif name == "torch":
        import torch

        model.zero_grad()
        loss, y_pred_adv = adversarial_loss(x, x_adv, y, sample_weight)
        track_loss(loss, x)
        model.optimizer.scale_loss(loss).backward()
        gradients = [variable.value.grad for variable in variables]
        with torch.no_grad():
            model.optimizer.apply(gradients, variables)
    else:
        raise NotImplementedError(f"AdversarialModel trains on TensorFlow, JAX and PyTorch, not {name!r}.")
    return model.compute_metrics(x_adv, y, y_pred_adv, sample_weight=sample_weight)


def _jax_train_step(model, state, data, adversarial_batch, adversarial_loss, track_loss):
    # Keras' JAX trainer passes the state in and takes the new state back; every variable read inside
    # (the attack's model calls, the random starts' seed state, the warm-up's optimizer iterations) comes
    # from it through a StatelessScope, as in Keras' guide "Customizing what happens in fit() with JAX".
    import jax

    trainable, non_trainable, optimizer_values, metrics_values = state
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    optimizer_mapping = list(zip(model.optimizer.variables, optimizer_values))

    def mapping(trainable, non_trainable, metrics_values=()):
        return [
            *zip(model.trainable_variables, trainable),
            *zip(model.non_trainable_variables, non_trainable),
            *zip(model.metrics_variables, metrics_values),
            *optimizer_mapping,
        ]

    with keras.StatelessScope(state_mapping=mapping(trainable, non_trainable)) as scope:
        x_adv = ops.stop_gradient(adversarial_batch(x, y))
    non_trainable = _updated(scope, model.non_trainable_variables, non_trainable)

    def loss_function(trainable, non_trainable, metrics_values):
        with keras.StatelessScope(state_mapping=mapping(trainable, non_trainable, metrics_values)) as scope:
            loss, y_pred_adv = adversarial_loss(x, x_adv, y, sample_weight)
            scaled_loss = model.optimizer.scale_loss(loss)
        new_non_trainable = _updated(scope, model.non_trainable_variables, non_trainable)
        new_metrics = _updated(scope, model.metrics_variables, metrics_values)
        return scaled_loss, (loss, y_pred_adv, new_non_trainable, new_metrics)

    gradient_function = jax.value_and_grad(loss_function, has_aux=True)
    (_, (loss, y_pred_adv, non_trainable, metrics_values)), gradients = gradient_function(
        trainable, non_trainable, metrics_values
    )
    trainable, optimizer_values = model.optimizer.stateless_apply(optimizer_values, gradients, trainable)
    with keras.StatelessScope(state_mapping=list(zip(model.metrics_variables, metrics_values))) as scope:
        track_loss(loss, x)
        logs = model.compute_metrics(x_adv, y, y_pred_adv, sample_weight=sample_weight)
    metrics_values = _updated(scope, model.metrics_variables, metrics_values)
    return logs, (trainable, non_trainable, optimizer_values, metrics_values)


def _updated(scope, variables, values):
    """The values of `variables` after a `StatelessScope`: the new one where the scope assigned it."""
    new = [scope.get_current_value(variable) for variable in variables]
    return [value if current is None else current for current, value in zip(new, values)]
