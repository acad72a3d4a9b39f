"""FGSM, PGD and MI-FGSM as configurable, serializable attack objects.

Call an attack as `attack(model, x, y)`; it returns the adversarial batch. The ascent,
projection, clipping and restarts live in `keras_lossopt.adversarial.ascent.GradientAttack`.
"""

from __future__ import annotations

import keras

from keras_lossopt.adversarial.ascent import GradientAttack

__all__ = ["FastGradientMethod", "MomentumIterativeMethod", "ProjectedGradientDescent"]


@keras.saving.register_keras_serializable(package="keras_lossopt")
class FastGradientMethod(GradientAttack):
    """Fast gradient (sign) method: one gradient step of size `eps` (Goodfellow et al. 2015).

    The cheapest attack; use it for adversarial training (`method="fast"` adds a random
    start and a step of 1.25 * eps, Wong et al. 2020) or as a quick first check. It
    overstates robustness: evaluate with `ProjectedGradientDescent` (or
    `robust_accuracy`, which takes the worst case over several attacks).

    Formula:
        L-inf: `x_adv = clip(x + eps * sign(grad_x J(x, y)), *clip)`
        L2:    `x_adv = clip(x + eps * grad / ||grad||_2, *clip)`
        where `J` is the loss of the true label (untargeted) or minus the loss of the
        target (targeted). With `random_start`, the step starts from a uniform point of
        the eps-ball and the result is projected back onto the ball.

    Args:
        eps: perturbation budget, >= 0. `eps=0` returns the input unchanged.
        norm: `"linf"` (default) or `"l2"` (also `np.inf`, `2`).
        targeted: if True, `y` holds target classes and the attack moves towards them.
            Default False.
        clip: `(low, high)` range of valid inputs, or None (unbounded). Default `(0, 1)`.
            Every iterate is clipped to it; inputs outside it are an error (set `clip` to
            the range of the data, e.g. `(-3, 3)` for standardized inputs, or None).
        loss: `None` (default: the model's compiled loss, else cross-entropy),
            `"cross_entropy"`, `"margin"` (Carlini-Wagner) or any Keras loss / loss name.
        from_logits: whether the model outputs logits; None (default) detects it (see
            `keras_lossopt.adversarial.objectives`).
        random_start: start from a uniform random point of the eps-ball. Default False.
        step_size: size of the step; default `eps` (`1.25 * eps` is Wong et al.'s choice
            with a random start).
        seed: seed of the random start. Default None.
        name: name of the attack. Default `"fast_gradient_method"`.

    Returns:
        Calling the attack returns the adversarial batch, same shape and dtype as `x`.

    Raises:
        ValueError: for `eps < 0`, `step_size <= 0`, an unknown `norm` or `loss`, or a
            model whose output has no gradient with respect to its input (at the first call).
            At each call: `x` outside `clip` or not finite, `len(y) != len(x)`, labels
            outside the model's classes, a model with several inputs or outputs.

    Examples:
        >>> import keras, numpy as np
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        >>> x = np.full((2, 4), 0.5, "float32")
        >>> x_adv = FastGradientMethod(eps=0.1)(model, x, np.array([0, 1]))
        >>> bool(np.allclose(np.abs(x_adv - x).max(axis=1), 0.1))
        True

    References:
        Goodfellow, Shlens, Szegedy (2015). Explaining and Harnessing Adversarial Examples. ICLR.
        Wong, Rice, Kolter (2020). Fast is better than free: Revisiting adversarial training. ICLR.
    """

    def __init__(
        self,
        eps=0.3,
        norm="linf",
        targeted=False,
        clip=(0.0, 1.0),
        loss=None,
        from_logits=None,
        random_start=False,
        step_size=None,
        seed=None,
        name=None,
    ):
        super().__init__(
            eps,
            norm=norm,
            steps=1,
            step_size=step_size,
            random_start=random_start,
            targeted=targeted,
            clip=clip,
            loss=loss,
            from_logits=from_logits,
            seed=seed,
            name=name,
        )

    def _default_step_size(self):
        return self.eps

    def get_config(self):
        return {**super().get_config(), "random_start": self.random_start, "step_size": self.step_size}


@keras.saving.register_keras_serializable(package="keras_lossopt")
class ProjectedGradientDescent(GradientAttack):
    """Projected gradient descent (Madry et al. 2018): iterated FGSM projected onto the eps-ball.

    The standard attack for evaluating and for training robust models (`method="madry"`).
    Several restarts from random points keep, per sample, the strongest result (one that
    fools the model first, then the highest objective). Attack both the cross-entropy and
    the margin (`loss="margin"`) to avoid overstating robustness, as `robust_accuracy` does.

    Formula:
        `x_{t+1} = clip(Proj_{B(x, eps)}(x_t + step_size * d_t), *clip)` with
        `d_t = sign(g_t)` (L-inf) or `g_t / ||g_t||_2` (L2), `g_t = grad_x J(x_t, y)`.
        Margin loss (Carlini and Wagner 2017): `J = max_{j != y} z_j - z_y` on logits (or
        log-probabilities).

    Args:
        eps: perturbation budget, >= 0. Default 0.3.
        norm: `"linf"` (default) or `"l2"`.
        steps: number of steps, >= 1. Default 10.
        step_size: step length, > 0; default `2.5 * eps / steps`.
        random_start: start each restart from a uniform point of the eps-ball. Default True.
        restarts: independent runs, keeping the strongest example per sample. Default 1.
        targeted: if True, `y` holds target classes. Default False.
        clip: `(low, high)` range of valid inputs, or None. Default `(0, 1)`.
        loss: `None` (the compiled loss, else cross-entropy), `"cross_entropy"`,
            `"margin"` or any Keras loss; as in `FastGradientMethod`.
        from_logits: whether the model outputs logits; None (default) detects it.
        seed: seed of the random starts. Default None.
        name: name of the attack. Default `"projected_gradient_descent"`.

    Returns:
        Calling the attack returns the adversarial batch, same shape and dtype as `x`.
        `attack.trajectory(model, x, y)` returns every iterate.

    Raises:
        ValueError: for `eps < 0`, `step_size <= 0`, `steps < 1`, `restarts < 1`, an
            unknown `norm` or `loss`, or a non-differentiable model (at the first call).

    Examples:
        >>> import keras, numpy as np
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        >>> x = np.full((2, 4), 0.5, "float32")
        >>> x_adv = ProjectedGradientDescent(eps=0.1, steps=5, seed=0)(model, x, np.array([0, 1]))
        >>> bool(np.abs(x_adv - x).max() <= 0.1 + 1e-6)
        True

    References:
        Madry, Makelov, Schmidt, Tsipras, Vladu (2018). Towards Deep Learning Models
            Resistant to Adversarial Attacks. ICLR.
        Carlini, Wagner (2017). Towards Evaluating the Robustness of Neural Networks. IEEE S&P.
    """

    def __init__(
        self,
        eps=0.3,
        norm="linf",
        steps=10,
        step_size=None,
        random_start=True,
        restarts=1,
        targeted=False,
        clip=(0.0, 1.0),
        loss=None,
        from_logits=None,
        seed=None,
        name=None,
    ):
        super().__init__(
            eps,
            norm=norm,
            steps=steps,
            step_size=step_size,
            random_start=random_start,
            restarts=restarts,
            targeted=targeted,
            clip=clip,
            loss=loss,
            from_logits=from_logits,
            seed=seed,
            name=name,
        )

    def _default_step_size(self):
        return 2.5 * self.eps / self.steps

    def get_config(self):
        return {
            **super().get_config(),
            "steps": self.steps,
            "step_size": self.step_size,
            "random_start": self.random_start,
            "restarts": self.restarts,
        }


@keras.saving.register_keras_serializable(package="keras_lossopt")
class MomentumIterativeMethod(GradientAttack):
    """Momentum iterative FGSM (MI-FGSM, Dong et al. 2018).

    Iterated FGSM whose direction accumulates L1-normalized gradients with momentum; the
    momentum steadies the direction and makes examples transfer better to other models.

    Formula:
        `v_{t+1} = decay * v_t + g_t / ||g_t||_1`,
        `x_{t+1} = clip(Proj_{B(x, eps)}(x_t + step_size * sign(v_{t+1})), *clip)`
        (L2: `v / ||v||_2` instead of the sign).

    Args:
        eps: perturbation budget, >= 0. Default 0.3.
        norm: `"linf"` (default) or `"l2"`.
        steps: number of steps, >= 1. Default 10.
        step_size: step length, > 0; default `eps / steps` (the paper's choice).
        decay: momentum factor `mu`, >= 0. Default 1.0.
        targeted: if True, `y` holds target classes. Default False.
        clip: `(low, high)` range of valid inputs, or None. Default `(0, 1)`.
        loss: `None` (the compiled loss, else cross-entropy), `"cross_entropy"`,
            `"margin"` or any Keras loss; as in `FastGradientMethod`.
        from_logits: whether the model outputs logits; None (default) detects it.
        seed: seed of the random starts. Default None.
        name: name of the attack. Default `"momentum_iterative_method"`.

    Returns:
        Calling the attack returns the adversarial batch, same shape and dtype as `x`.

    Raises:
        ValueError: for `eps < 0`, `step_size <= 0`, `decay < 0`, `steps < 1`, an unknown
            `norm` or `loss`, or a non-differentiable model (at the first call).

    Examples:
        >>> import keras, numpy as np
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        >>> x = np.full((2, 4), 0.5, "float32")
        >>> x_adv = MomentumIterativeMethod(eps=0.1, steps=4)(model, x, np.array([0, 1]))
        >>> bool(np.abs(x_adv - x).max() <= 0.1 + 1e-6)
        True

    References:
        Dong, Liao, Pang, Su, Zhu, Hu, Li (2018). Boosting Adversarial Attacks with Momentum. CVPR.
    """

    def __init__(
        self,
        eps=0.3,
        norm="linf",
        steps=10,
        step_size=None,
        decay=1.0,
        targeted=False,
        clip=(0.0, 1.0),
        loss=None,
        from_logits=None,
        seed=None,
        name=None,
    ):
        super().__init__(
            eps,
            norm=norm,
            steps=steps,
            step_size=step_size,
            decay=decay,
            targeted=targeted,
            clip=clip,
            loss=loss,
            from_logits=from_logits,
            seed=seed,
            name=name,
        )

    def get_config(self):
        return {**super().get_config(), "steps": self.steps, "step_size": self.step_size, "decay": self.decay}
