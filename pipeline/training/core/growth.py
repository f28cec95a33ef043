"""Growing TEDPolicy's input features when the domain only gained intents or entities (NumPy only).

The state vector is ``[prev action | intent | entities | slot features | active form]``
(:meth:`.states.DomainSpec.encode`); a new intent or entity label adds one input
feature. The input kernel's rows move to the features' new positions and new
features get zero rows, so the grown network computes exactly what the old one
did until the finetune trains them.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from .states import DomainSpec

__all__ = ["feature_names", "grow_input_weights"]


def feature_names(spec: DomainSpec) -> list[tuple[Any, ...]]:
    """A name for every position of the state vector of ``spec``."""
    names: list[tuple[Any, ...]] = [("action", a) for a in spec.actions]
    names += [("intent", i) for i in spec.intents]
    names += [("entity", e) for e in spec.entities]
    for slot in spec.slots:
        names += [("slot", slot.name, k) for k in range(slot.dim)]
    names += [("form", f) for f in spec.forms]
    return names


def grow_input_weights(weights: Mapping[str, np.ndarray], old: DomainSpec, new: DomainSpec) -> dict[str, np.ndarray]:
    """TED weights for ``new``'s state vector: old rows of ``input/kernel`` moved, new rows zero.

    Raises ValueError when ``new`` lost a feature (only additions can be grown)."""
    old_index = {name: i for i, name in enumerate(feature_names(old))}
    new_names = feature_names(new)
    lost = sorted(set(old_index) - set(new_names), key=str)
    if lost:
        raise ValueError(f"the new domain lost input features {lost[:5]}")
    kernel = weights["input/kernel"]
    grown = np.zeros((len(new_names), kernel.shape[1]), dtype=kernel.dtype)
    for j, name in enumerate(new_names):
        if name in old_index:
            grown[j] = kernel[old_index[name]]
    return {**weights, "input/kernel": grown}
