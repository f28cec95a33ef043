"""Optimisation shared by the DIET and TED trainers: Adam and the growing batch size.

This module imports no TensorFlow: :class:`Adam` is given the module by its caller.
"""

from __future__ import annotations

from typing import Any, Sequence

__all__ = ["Adam", "batch_size_for", "BETA1", "BETA2", "EPSILON"]

#: Adam's decay rates and denominator epsilon (TensorFlow's defaults, as Rasa trains with).
BETA1, BETA2, EPSILON = 0.9, 0.999, 1e-7


def batch_size_for(epoch: int, epochs: int, sizes: tuple[int, int]) -> int:
    """Rasa's linearly increasing batch size from ``sizes[0]`` (first epoch) to ``sizes[1]`` (last)."""
    if epochs <= 1:
        return sizes[0]
    return int(sizes[0] + epoch * (sizes[1] - sizes[0]) / (epochs - 1))


class Adam:
    """Adam over ``variables``, to be applied inside a ``tf.function``.

    Dense gradients use TensorFlow's fused Adam kernel; sparse ones (``tf.IndexedSlices``, the
    gradients of embedding tables read with ``tf.gather``) get a lazy update that touches only
    the rows the batch used, so a row's moments do not decay while it is unused.
    """

    def __init__(self, tf: Any, variables: Sequence[Any]) -> None:
        self.tf = tf
        self.variables = list(variables)
        self._m = [tf.Variable(tf.zeros_like(v)) for v in self.variables]
        self._v = [tf.Variable(tf.zeros_like(v)) for v in self.variables]
        self._step = tf.Variable(0.0, dtype=tf.float32)

    def apply(self, grads: Sequence[Any], learning_rate: Any) -> None:
        """One step with ``grads`` (in the order of ``variables``; ``None``: no gradient)."""
        tf = self.tf
        learning_rate = tf.convert_to_tensor(learning_rate, tf.float32)
        t = self._step.assign_add(1.0)
        beta1_power, beta2_power = tf.pow(BETA1, t), tf.pow(BETA2, t)
        lr = learning_rate * tf.sqrt(1.0 - beta2_power) / (1.0 - beta1_power)
        for var, m, v, grad in zip(self.variables, self._m, self._v, grads):
            if grad is None:
                continue
            if isinstance(grad, tf.IndexedSlices):  # lazy Adam: only the rows this batch used
                unique, index = tf.unique(grad.indices)
                values = tf.math.unsorted_segment_sum(grad.values, index, tf.shape(unique)[0])
                m_rows = BETA1 * tf.gather(m, unique) + (1.0 - BETA1) * values
                v_rows = BETA2 * tf.gather(v, unique) + (1.0 - BETA2) * tf.square(values)
                m.scatter_update(tf.IndexedSlices(m_rows, unique))
                v.scatter_update(tf.IndexedSlices(v_rows, unique))
                var.scatter_sub(tf.IndexedSlices(lr * m_rows / (tf.sqrt(v_rows) + EPSILON), unique))
            else:
                tf.raw_ops.ResourceApplyAdam(
                    var=var.handle,
                    m=m.handle,
                    v=v.handle,
                    beta1_power=beta1_power,
                    beta2_power=beta2_power,
                    lr=learning_rate,
                    beta1=tf.constant(BETA1),
                    beta2=tf.constant(BETA2),
                    epsilon=tf.constant(EPSILON),
                    grad=grad,
                )
