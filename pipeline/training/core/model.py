"""The trained dialogue model: policies, ensemble, save and load.

Prediction needs NumPy only (TEDPolicy runs its network in NumPy), so a
loaded model predicts exactly what the trained one did.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence, Union

import numpy as np

from pipeline import MODEL_FORMAT_VERSION
from pipeline.errors import ModelError

from . import layout
from .ensemble import PolicyOutput, Prediction, pick_prediction
from .memoization import MemoizationPolicy
from .rules import RulePolicy
from .settings import CoreSettings, MemoSettings, RuleSettings, TedSettings
from .states import DomainSpec, State, replay
from .ted import TEDPolicy
from .tracker import TrackerState

__all__ = ["CoreModel", "Policy"]

Policy = Union[RulePolicy, MemoizationPolicy, TEDPolicy]


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(
            f"{path.name} is missing from the dialogue model", location=str(path.parent),
            hint="the directory is not a complete deltatrain dialogue model; train a new model",
        ) from None
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path.name} cannot be read: {exc}", location=str(path),
                         hint="the saved model is corrupt; train a new model") from exc


class CoreModel:
    """A trained dialogue policy ensemble over one domain's vocabulary."""

    def __init__(
        self,
        spec: DomainSpec,
        settings: CoreSettings,
        policies: Sequence[Policy],
        domain: Mapping[str, Any],
        summary: Mapping[str, Any],
    ) -> None:
        self.spec = spec
        self.settings = settings
        self.policies = tuple(policies)
        #: ``{"sections": ..., "fingerprint": ...}`` of the domain trained on.
        self.domain = dict(domain)
        #: JSON-able facts about the training run (see :func:`train_core`).
        self.summary: dict[str, Any] = dict(summary)

    # ------------------------------------------------------------------ policies

    def _policy(self, kind: type) -> Any:
        return next((p for p in self.policies if isinstance(p, kind)), None)

    @property
    def rule_policy(self) -> RulePolicy | None:
        return self._policy(RulePolicy)  # type: ignore[no-any-return]

    @property
    def memoization_policy(self) -> MemoizationPolicy | None:
        return self._policy(MemoizationPolicy)  # type: ignore[no-any-return]

    @property
    def ted_policy(self) -> TEDPolicy | None:
        return self._policy(TEDPolicy)  # type: ignore[no-any-return]

    @property
    def ranking_length(self) -> int:
        ted = self.settings.ted
        return ted.ranking_length if ted is not None and ted.ranking_length > 0 else 10

    # ---------------------------------------------------------------- prediction

    def states_for(self, tracker: TrackerState) -> tuple[State, ...]:
        """The state history a tracker is predicted from."""
        return replay(tracker.events, self.spec).final_history

    def predict_next_action(self, tracker: TrackerState) -> Prediction:
        """The action to run next, with the winning policy's confidence and ranking."""
        return self.predict_from_states(self.states_for(tracker))

    def ted_probabilities(self, histories: Sequence[Sequence[State]]) -> np.ndarray | None:
        """TEDPolicy's confidences for many histories at once (``None`` without a trained TED)."""
        ted = self.ted_policy
        return ted.predict_batch(histories, self.spec) if ted is not None and histories else None

    def predict_from_states(
        self,
        history: Sequence[State],
        *,
        loop_rejected: bool = False,
        ted_probabilities: np.ndarray | None = None,
    ) -> Prediction:
        """Ensemble prediction for a state history.

        ``loop_rejected`` emulates the active form rejecting its turn (as Rasa's
        story test does); ``ted_probabilities`` reuses a row of :meth:`ted_probabilities`.
        """
        outputs: list[PolicyOutput | None] = []
        for policy in self.policies:
            if isinstance(policy, RulePolicy):
                outputs.append(policy.predict(history, self.spec, loop_rejected))
            elif isinstance(policy, MemoizationPolicy):
                outputs.append(policy.predict(history, self.spec))
            elif ted_probabilities is not None:
                outputs.append(policy.output(ted_probabilities))
            else:
                outputs.append(policy.predict(history, self.spec))
        return pick_prediction(outputs, self.spec.actions, ranking_length=self.ranking_length)

    # --------------------------------------------------------------- persistence

    def save(self, directory: Path) -> None:
        """Write the model into ``directory`` (created if needed); see :mod:`.layout`."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        _write_json(
            directory / layout.FORMAT_FILE,
            {"kind": layout.MODEL_KIND, "model_format_version": MODEL_FORMAT_VERSION, "core_format": layout.CORE_FORMAT},
        )
        _write_json(directory / layout.CONFIG_FILE, self.settings.get_config())
        _write_json(directory / layout.DOMAIN_FILE, {**self.domain, "spec": self.spec.to_json()})
        _write_json(directory / layout.TRAINING_FILE, self.summary)
        for name in (layout.RULES_FILE, layout.MEMO_FILE, layout.TED_FILE, layout.TED_WEIGHTS_FILE):
            (directory / name).unlink(missing_ok=True)
        for policy in self.policies:
            if isinstance(policy, RulePolicy):
                _write_json(directory / layout.RULES_FILE, policy.to_json())
            elif isinstance(policy, MemoizationPolicy):
                _write_json(directory / layout.MEMO_FILE, policy.to_json())
            else:
                _write_json(
                    directory / layout.TED_FILE,
                    {"max_history": policy.max_history, "trained": policy.weights is not None},
                )
                if policy.weights is not None:
                    with (directory / layout.TED_WEIGHTS_FILE).open("wb") as handle:
                        np.savez(handle, **policy.weights)  # type: ignore[arg-type]

    @classmethod
    def load(cls, directory: Path) -> "CoreModel":
        """Read a model written by :meth:`save`; ModelError when it is missing or unusable."""
        directory = Path(directory)
        if not directory.is_dir():
            raise ModelError(f"no dialogue model directory at {directory}", hint="pass the directory CoreModel.save wrote")
        fmt = _read_json(directory / layout.FORMAT_FILE)
        received = (fmt.get("kind"), fmt.get("model_format_version"), fmt.get("core_format"))
        expected = (layout.MODEL_KIND, MODEL_FORMAT_VERSION, layout.CORE_FORMAT)
        if received != expected:
            raise ModelError(
                f"{directory} holds a model of kind={received[0]!r} version={received[1]!r} core_format={received[2]!r}; "
                f"expected kind={expected[0]!r} version={expected[1]!r} core_format={expected[2]!r}",
                hint="train a new dialogue model with this version of deltatrain",
            )
        try:
            settings = CoreSettings.from_config(_read_json(directory / layout.CONFIG_FILE))
            domain = _read_json(directory / layout.DOMAIN_FILE)
            spec = DomainSpec.from_json(domain.pop("spec"))
            policies: list[Policy] = []
            for policy_settings in settings.policies:
                if isinstance(policy_settings, RuleSettings):
                    policies.append(RulePolicy.from_json(policy_settings, _read_json(directory / layout.RULES_FILE)))
                elif isinstance(policy_settings, MemoSettings):
                    policies.append(MemoizationPolicy.from_json(policy_settings, _read_json(directory / layout.MEMO_FILE)))
                elif isinstance(policy_settings, TedSettings):
                    policies.append(cls._load_ted(directory, policy_settings))
        except (KeyError, TypeError, IndexError, ValueError) as exc:
            raise ModelError(f"the dialogue model in {directory} is malformed ({exc!r})",
                             hint="the saved model is corrupt; train a new model") from exc
        summary = _read_json(directory / layout.TRAINING_FILE)
        model = cls(spec, settings, policies, domain, summary)
        ted = model.ted_policy
        if ted is not None:
            ted.check_shapes(spec)
        return model

    @staticmethod
    def _load_ted(directory: Path, settings: TedSettings) -> TEDPolicy:
        info = _read_json(directory / layout.TED_FILE)
        weights = None
        if info["trained"]:
            path = directory / layout.TED_WEIGHTS_FILE
            try:
                with np.load(path, allow_pickle=False) as data:
                    weights = {name: data[name] for name in data.files}
            except FileNotFoundError:
                raise ModelError(f"{layout.TED_WEIGHTS_FILE} is missing from the dialogue model", location=str(directory),
                                 hint="the model directory is incomplete; train a new model") from None
            except (OSError, ValueError) as exc:
                raise ModelError(f"{path} cannot be read: {exc}", hint="the saved model is corrupt; train a new model") from exc
        return TEDPolicy(settings, int(info["max_history"]), weights)
