"""Keras callbacks: gradient monitoring, training diagnostics and robustness evaluation."""

__all__: list[str] = []
