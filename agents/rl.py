"""Reinforcement-learning agents: a thin builder from rl-zoo3-style hyperparameters to SB3.

driftrec never forks an algorithm: :func:`build_agent` turns a YAML mapping of hyperparameters
(rl-zoo3's keys) into a stable-baselines3 / sb3-contrib model, :class:`SB3Policy` lets the
harness drive a trained model like any other :class:`~driftrec.agents.policies.Policy`, and
:func:`save_agent` / :func:`load_agent` keep the model with a ``spec.yaml`` that records the
environment it was trained on, which :func:`check_env_spec` compares before an evaluation.

Hyperparameters (``agents/hyperparams/<algo>.yml``, one entry per preset on top of ``defaults``):

- ``n_timesteps``: training budget; ``n_envs``: simulated users stepped together (the batch of
  the training VecEnv); ``policy``: ``ItemScoringPolicy``, ``MlpPolicy`` or ``MultiInputPolicy``
  (default: ``MlpPolicy`` / ``MultiInputPolicy`` by the observation space); ``policy_kwargs``: a
  mapping or rl-zoo3's string form ``"dict(net_arch=[64, 64], activation_fn=nn.ReLU)"``, plus
  driftrec's ``features_extractor: gru | attention`` for ``history`` observations;
- ``learning_rate``, ``clip_range``, ``clip_range_vf``: a number or ``lin_<value>`` (linear decay
  to 0, as rl-zoo3);
- every other key must be an argument of the algorithm's constructor (``gamma``, ``n_steps``,
  ``batch_size``, ``ent_coef``, ``buffer_size``, ...; ``dqn`` also takes ``double_q`` and
  ``huber_delta``, see :class:`DoubleDQN`). Unknown keys raise :class:`ConfigError`
  naming the key. ``normalize`` is accepted only as false: observations already lie in their
  declared bounds, and a VecNormalize would have to travel with every saved model.

Policies. ``ItemScoringPolicy`` (:mod:`driftrec.agents.item_scoring`) scores each item from a user
encoding and the item's representation (a learned embedding plus its category and price), one
score function shared by every item: actor logits for PPO / A2C / MaskablePPO, Q-values for DQN
and QR-DQN, over the catalog or the request's candidates, on ``features`` and ``history``
observations alike (one name for both). Its ``policy_kwargs``: ``net_arch`` (the user MLP; for
actor-critics also the critic, or ``dict(pi=..., vf=...)``), ``activation_fn``,
``embedding_dim`` (32), ``item_ids`` (true: an embedding and a bias per item id, catalog mode),
``cross_features`` (true: the per-category term), ``layer_norm`` (false; DQN and QR-DQN: a
LayerNorm in the user MLP), ``features_extractor`` for ``history``.
:func:`build_agent` adds the simulator's catalog as ``policy_kwargs['catalog']``
(:func:`~driftrec.agents.item_scoring.catalog_kwargs`); SB3 saves it with the model, so
:func:`load_agent` needs no simulator. ``MlpPolicy`` (one output per item) stays for comparison.

Seeds of simulated users follow :mod:`driftrec.envs.rollout` (the roles never overlap):
training users of run seed s are ``s + i`` (``train_seeds``; SB3 seeds the training VecEnv with
s, and autoreset draws the later lives of those slots), evaluation users ``s + 10**9 + i``
(``eval_seeds``, what ``driftrec evaluate`` and the harness judge on). Validation users, whom the
periodic evaluation during training meets, are a role of their own, ``s + 3 * 10**9 + i``
(:func:`driftrec.envs.rollout.validation_seeds`): model selection (``best_model.zip``) never sees the evaluation users,
and every validation meets the same users (first life), so learning curves compare like with like.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import inspect
import os
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from gymnasium import spaces
from sb3_contrib import QRDQN, MaskablePPO
from stable_baselines3 import A2C, DQN, PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.utils import LinearSchedule
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
from stable_baselines3.common.vec_env.base_vec_env import VecEnvObs, VecEnvStepReturn
from torch import nn
from torch.nn import functional as F

from driftrec.agents.extractors import FEATURE_EXTRACTORS
from driftrec.agents.item_scoring import (
    ITEM_SCORING_POLICY,
    ItemScoringExtractor,
    catalog_kwargs,
    item_scoring_policy,
)
from driftrec.agents.model_file import check_agent_file, check_supervised_file, unreadable
from driftrec.envs.config import ConfigError, SimConfig, read_yaml_mapping
from driftrec.envs.policy import Policy
from driftrec.envs.presets import PRESETS
from driftrec.envs.rollout import VALIDATION_SEED_OFFSET, validation_seeds
from driftrec.envs.user_model import build_user_model

__all__ = ["ALGORITHMS", "ITEM_SCORING_POLICY", "VALIDATION_SEED_OFFSET", "DoubleDQN", "HeldOutUsers", "SB3Policy",
           "build_agent", "load_agent", "policy_class", "save_agent", "validation_seeds"]

class DoubleDQN(DQN):
    """SB3's DQN with two of the field's options: the double-Q target and the Huber loss's threshold.

    ``double_q``: the online network chooses the next action and the target network values it,
    ``r + gamma * Q_target(s', argmax_a Q(s', a))`` (van Hasselt et al. 2016), instead of
    ``max_a Q_target(s', a)``: the max over hundreds of noisy item scores overestimates, and the
    overestimate feeds every target. ``huber_delta``: TD errors beyond it count linearly (SB3's
    loss is Huber with 1, made for rewards clipped to [-1, 1]; a purchase's reward is larger).
    ``double_q`` false and ``huber_delta`` 1 are SB3's DQN. Every other argument is DQN's.
    """

    def __init__(self, *args: Any, double_q: bool = False, huber_delta: float = 1.0, **kwargs: Any):
        self.double_q = bool(double_q)
        self.huber_delta = float(huber_delta)
        if not self.huber_delta > 0:
            raise ValueError(f"huber_delta must be positive, got {huber_delta}")
        super().__init__(*args, **kwargs)

    def next_values(self, next_observations: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, 1) values of the next states the target bootstraps from: ``Q_target(s', argmax_a Q(s', a))``
        with ``double_q``, else ``max_a Q_target(s', a)``."""
        target = self.q_net_target(next_observations)
        if not self.double_q:
            return target.max(dim=1, keepdim=True).values
        return torch.gather(target, 1, self.q_net(next_observations).argmax(dim=1, keepdim=True))

    def train(self, gradient_steps: int, batch_size: int = 100) -> None:
        """SB3 2.9's ``DQN.train`` (n-step discounts included) with :meth:`next_values` and ``huber_delta``."""
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        losses = []
        for _ in range(gradient_steps):
            data = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)  # type: ignore[union-attr]
            discounts = data.discounts if data.discounts is not None else self.gamma
            with torch.no_grad():
                target = data.rewards + (1 - data.dones) * discounts * self.next_values(data.next_observations)
            current = torch.gather(self.q_net(data.observations), 1, data.actions.long())
            loss = F.huber_loss(current, target, delta=self.huber_delta)
            losses.append(loss.item())
            self.policy.optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
            self.policy.optimizer.step()
        self._n_updates += gradient_steps
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/loss", np.mean(losses))


ALGORITHMS: dict[str, type[BaseAlgorithm]] = {
    "ppo": PPO, "dqn": DoubleDQN, "a2c": A2C, "qrdqn": QRDQN, "maskable-ppo": MaskablePPO,
}
"""Algorithm name (CLI and YAML file name) -> SB3 class."""

DISCRETE_ONLY = ("dqn", "qrdqn")  # value-based: one Q-value per action, so Discrete actions only
ZOO_KEYS = ("n_timesteps", "n_envs", "policy", "policy_kwargs", "normalize")  # not constructor arguments
SCHEDULE_KEYS = ("learning_rate", "clip_range", "clip_range_vf")  # may be "lin_<value>"
DEFAULTS_ENTRY = "defaults"  # the per-preset YAML entry every preset starts from
_UNSUPPORTED = {  # rl-zoo3 keys that make no sense for a batched simulator
    "frame_stack": "observations are not images", "env_wrapper": "the env is a batched VecEnv",
    "vec_env_wrapper": "the env is a batched VecEnv", "callback": "pass callbacks to `run_train`",
    "normalize_kwargs": "normalize is not supported",
}
_NOT_HYPERPARAMS = {"self", "policy", "env", "seed", "tensorboard_log", "verbose", "device",
                    "_init_setup_model", "policy_kwargs"}  # set by the builder, not by YAML
_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU, "leaky_relu": nn.LeakyReLU, "gelu": nn.GELU, "silu": nn.SiLU,
}


# ------------------------------------------------------------------------------------- held-out users
class HeldOutUsers(VecEnvWrapper):
    """Every ``reset()`` restarts the same users (seeds ``first`` .. ``first + N - 1``, first life).

    SB3's ``evaluate_policy`` resets its env before each evaluation; a plain VecEnv would start
    each slot's next life there, so every evaluation would meet different users.
    """

    def __init__(self, venv: VecEnv, first: int):
        super().__init__(venv)
        self.first = first

    def reset(self) -> VecEnvObs:
        self.venv.seed(self.first)
        return self.venv.reset()

    def step_wait(self) -> VecEnvStepReturn:
        return self.venv.step_wait()


# ------------------------------------------------------------------------------------- hyperparameters
def algorithm(algo: str) -> type[BaseAlgorithm]:
    """The SB3 class of ``algo``; unknown names raise ConfigError."""
    if algo not in ALGORITHMS:
        raise ConfigError(f"unknown algorithm '{algo}'; choose one of: {', '.join(ALGORITHMS)}")
    return ALGORITHMS[algo]


def _constructor_params(algo: str) -> dict[str, inspect.Parameter]:
    """The named arguments of ``algo``'s constructor, a subclass's (``**kwargs`` passed on) with its base's."""
    params: dict[str, inspect.Parameter] = {}
    for cls in algorithm(algo).__mro__:
        own = inspect.signature(cls.__init__).parameters  # type: ignore[misc]
        params.update({k: p for k, p in own.items() if k not in params and p.kind not in
                       (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)})
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in own.values()):
            break
    return params


def hyperparam_keys(algo: str) -> frozenset[str]:
    """Every hyperparameter ``algo`` accepts: rl-zoo3's keys and its constructor's arguments."""
    return frozenset(ZOO_KEYS) | (frozenset(_constructor_params(algo)) - _NOT_HYPERPARAMS)


def check_hyperparams(algo: str, hyperparams: Mapping[str, Any], where: str = "") -> None:
    """Raise ConfigError (one line naming the key) on a key ``algo`` does not accept."""
    allowed = hyperparam_keys(algo)
    for key in hyperparams:
        if key in _UNSUPPORTED:
            raise ConfigError(f"hyperparameter '{key}'{where} is not supported by driftrec: {_UNSUPPORTED[key]}")
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"unknown hyperparameter '{key}' for {algo}{where}{hint}")


def hyperparams_file(algo: str) -> Path:
    """The packaged YAML of ``algo`` (``agents/hyperparams/<algo>.yml``)."""
    algorithm(algo)
    return Path(str(resources.files("driftrec.agents") / "hyperparams" / f"{algo}.yml"))


def load_hyperparams(algo: str, preset: str, file: str | Path | None = None) -> dict[str, Any]:
    """Hyperparameters of ``algo`` on ``preset`` from the packaged YAML or a user ``file``.

    A file is either per preset (top-level keys are preset names and ``defaults``; a preset's
    entry is laid over ``defaults``) or flat (the hyperparameters themselves, as a tuning run
    exports them). Keys are checked against the algorithm; mistakes raise one-line ConfigErrors.
    """
    path = Path(file) if file is not None else hyperparams_file(algo)
    where = f" in '{path}'"
    data = read_yaml_mapping(path, "hyperparameter file")
    if any(key == DEFAULTS_ENTRY or key in PRESETS for key in data):
        for key, entry in data.items():
            if key != DEFAULTS_ENTRY and key not in PRESETS:
                raise ConfigError(f"unknown preset '{key}'{where}; entries are preset names or '{DEFAULTS_ENTRY}'")
            if not isinstance(entry, dict):
                raise ConfigError(f"entry '{key}'{where} must be a mapping of hyperparameters")
        hyperparams = {**data.get(DEFAULTS_ENTRY, {}), **data.get(preset, {})}
        if DEFAULTS_ENTRY not in data and preset not in data:
            raise ConfigError(f"no entry for preset '{preset}' and no '{DEFAULTS_ENTRY}'{where}")
        where = f" (preset '{preset}'){where}"
    else:
        hyperparams = dict(data)
    check_hyperparams(algo, hyperparams, where)
    return hyperparams


def parse_policy_kwargs(value: Any) -> dict[str, Any]:
    """``policy_kwargs`` as a YAML-safe mapping; rl-zoo3's string form is parsed, never evaluated.

    ``"dict(net_arch=[64, 64], activation_fn=nn.ReLU)"`` -> ``{"net_arch": [64, 64],
    "activation_fn": "nn.ReLU"}``: literals stay literals, names like ``nn.ReLU`` become strings
    that :func:`build_agent` resolves against torch.
    """
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return dict(value)
    if not isinstance(value, str):
        raise ConfigError(f"hyperparameter 'policy_kwargs' must be a mapping or 'dict(...)', got {value!r}")
    try:
        tree = ast.parse(value.strip(), mode="eval").body
    except SyntaxError:
        raise ConfigError(f"hyperparameter 'policy_kwargs' is not valid: {value!r}") from None
    parsed = _literal(tree, value)
    if not isinstance(parsed, dict):
        raise ConfigError(f"hyperparameter 'policy_kwargs' must be a mapping or 'dict(...)', got {value!r}")
    return parsed


def _literal(node: ast.AST, text: str) -> Any:
    """A restricted literal evaluator: constants, lists, tuples, dicts, dict(k=v), dotted names."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
        return -node.operand.value
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_literal(e, text) for e in node.elts]
    if isinstance(node, ast.Dict) and all(k is not None for k in node.keys):
        return {_literal(k, text): _literal(v, text) for k, v in zip(node.keys, node.values, strict=True)}  # type: ignore[arg-type]
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict" and not node.args:
        return {kw.arg: _literal(kw.value, text) for kw in node.keywords if kw.arg is not None}
    if isinstance(node, (ast.Name, ast.Attribute)):
        return ast.unparse(node)
    raise ConfigError(f"hyperparameter 'policy_kwargs': cannot read {ast.unparse(node)!r} in {text!r}")


def _resolve_class(key: str, name: Any, module: Any, base: type, aliases: Mapping[str, type] | None = None) -> type:
    """``"nn.ReLU"`` / ``"relu"`` / a class -> the class, checked to be a subclass of ``base``."""
    if isinstance(name, type) and issubclass(name, base):
        return name
    if isinstance(name, str):
        if aliases and name.lower() in aliases:
            return aliases[name.lower()]
        attr = getattr(module, name.rsplit(".", 1)[-1], None)
        if isinstance(attr, type) and issubclass(attr, base):
            return attr
    raise ConfigError(f"policy_kwargs '{key}': unknown {base.__name__} {name!r}")


def policy_class(algo: str, policy: str) -> type[nn.Module]:
    """The policy class the YAML's ``policy`` names for ``algo`` (``ItemScoringPolicy``, or an SB3 alias)."""
    if policy == ITEM_SCORING_POLICY:
        return item_scoring_policy(algo)
    aliases = algorithm(algo).policy_aliases
    if policy not in aliases or policy == "CnnPolicy":
        raise ConfigError(f"hyperparameter 'policy' for {algo} must be {ITEM_SCORING_POLICY}, MlpPolicy or "
                          f"MultiInputPolicy, got {policy!r}")
    return aliases[policy]


def _policy_kwargs(algo: str, policy: str, value: Any, observation_space: spaces.Space) -> dict[str, Any]:
    """YAML-safe ``policy_kwargs`` -> the objects SB3 expects, checked against the policy class."""
    kwargs = parse_policy_kwargs(value)
    history = isinstance(observation_space, spaces.Dict)
    extractor = kwargs.pop("features_extractor", "gru" if history else None)
    if extractor == "none" and policy == ITEM_SCORING_POLICY and history:
        # no sequence encoder: the history reaches the item scores through their history term only
        kwargs["features_extractor_class"] = ItemScoringExtractor
        kwargs["features_extractor_kwargs"] = {"sequence_encoder": False}
        extractor = None
    if extractor is not None:
        if extractor not in FEATURE_EXTRACTORS:
            raise ConfigError(f"policy_kwargs 'features_extractor' must be one of {', '.join(FEATURE_EXTRACTORS)}, "
                              f"got {extractor!r}")
        if not history:
            raise ConfigError(f"policy_kwargs 'features_extractor: {extractor}' reads history observations: "
                              "set obs_mode=history")
        kwargs["features_extractor_class"] = FEATURE_EXTRACTORS[extractor]
    if "activation_fn" in kwargs:
        kwargs["activation_fn"] = _resolve_class("activation_fn", kwargs["activation_fn"], nn, nn.Module, _ACTIVATIONS)
    if "optimizer_class" in kwargs:
        kwargs["optimizer_class"] = _resolve_class("optimizer_class", kwargs["optimizer_class"], torch.optim,
                                                   torch.optim.Optimizer)
    params = inspect.signature(policy_class(algo, policy).__init__).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        allowed = set(params) - {"self", "observation_space", "action_space", "lr_schedule"}
        for key in kwargs:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f"; did you mean '{close[0]}'?" if close else ""
                raise ConfigError(f"unknown policy_kwargs key '{key}' for {algo} {policy}{hint}")
    return kwargs


def _coerce(algo: str, key: str, value: Any, default: Any) -> Any:
    """Numbers written as strings (YAML 1.1 reads ``3e-4`` as a string; ``--set`` values) and
    ``lin_<value>`` schedules -> what SB3 expects."""
    if key in SCHEDULE_KEYS and isinstance(value, str) and value.startswith("lin_"):
        try:
            return LinearSchedule(float(value[4:]), 0.0, 1.0)
        except ValueError:
            raise ConfigError(f"hyperparameter '{key}' for {algo}: bad schedule {value!r} (expected lin_<number>)") \
                from None
    numeric = isinstance(default, (int, float)) and not isinstance(default, bool)
    if key in SCHEDULE_KEYS or key in ("n_timesteps", "n_envs"):
        numeric = True
    if numeric and isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ConfigError(f"hyperparameter '{key}' for {algo} must be a number, got {value!r}") from None
    if isinstance(default, int) and not isinstance(default, bool) and isinstance(value, float) and value.is_integer():
        value = int(value)
    return value


def resolved_hyperparams(algo: str, hyperparams: Mapping[str, Any]) -> dict[str, Any]:
    """``hyperparams`` with numbers coerced (YAML-safe; schedules stay ``lin_<value>`` strings)."""
    check_hyperparams(algo, hyperparams)
    params = _constructor_params(algo)
    out: dict[str, Any] = {}
    for key, value in hyperparams.items():
        default = params[key].default if key in params else (0 if key in ("n_timesteps", "n_envs") else None)
        coerced = _coerce(algo, key, value, default)
        out[key] = value if isinstance(coerced, LinearSchedule) else coerced
    for key in ("n_timesteps", "n_envs"):
        if key in out and (not isinstance(out[key], (int, float)) or out[key] < 1 or out[key] != int(out[key])):
            raise ConfigError(f"hyperparameter '{key}' for {algo} must be a positive integer, got {out[key]!r}")
        if key in out:
            out[key] = int(out[key])
    return out


def build_agent(algo: str, venv: VecEnv, hyperparams: Mapping[str, Any], seed: int | None,
                tensorboard_log: str | None = None, *, verbose: int = 0, device: str = "cpu",
                user_model: Any = None) -> BaseAlgorithm:
    """An untrained SB3 model of ``algo`` on ``venv`` from rl-zoo3-style ``hyperparams``.

    ``n_timesteps`` and ``n_envs`` are for the caller (the training budget and ``venv``'s size)
    and are only checked here. DQN and QR-DQN need a single-item action (``Discrete``); a slate
    raises ConfigError suggesting PPO. ``history`` observations get ``MultiInputPolicy`` with the
    GRU extractor unless ``policy_kwargs`` names another. ``device`` defaults to the CPU: these
    networks are small, and SB3 itself advises the CPU for MLP policies.

    ``policy: ItemScoringPolicy`` reads the catalog of ``user_model`` (default: the model of the
    driftrec VecEnv under ``venv``'s wrappers) into ``policy_kwargs['catalog']``.
    """
    cls = algorithm(algo)
    hp = resolved_hyperparams(algo, hyperparams)
    if hp.get("normalize"):
        raise ConfigError(f"hyperparameter 'normalize' for {algo} is not supported: observations already lie in "
                          "their declared bounds; remove it or set it to false")
    if algo in DISCRETE_ONLY and not isinstance(venv.action_space, spaces.Discrete):
        raise ConfigError(f"{algo} needs a single-item action (Discrete) but the action space is "
                          f"{space_text(venv.action_space)} (a slate): use ppo, a2c or maskable-ppo, "
                          "or set slate_size=1")
    history = isinstance(venv.observation_space, spaces.Dict)
    policy = hp.get("policy") or ("MultiInputPolicy" if history else "MlpPolicy")
    policy_class(algo, policy)  # a one-line ConfigError for an unknown name
    item_scoring = policy == ITEM_SCORING_POLICY
    if not item_scoring and history != (policy == "MultiInputPolicy"):
        need = "MultiInputPolicy" if history else "MlpPolicy"
        raise ConfigError(f"hyperparameter 'policy' is {policy} but {space_text(venv.observation_space)} "
                          f"observations need {need} (or {ITEM_SCORING_POLICY})")
    params = _constructor_params(algo)
    kwargs = {k: _coerce(algo, k, v, params[k].default) for k, v in hp.items() if k not in ZOO_KEYS}
    kwargs["policy_kwargs"] = _policy_kwargs(algo, policy, hp.get("policy_kwargs"), venv.observation_space)
    if item_scoring and "catalog" not in kwargs["policy_kwargs"]:
        if user_model is None:
            user_model = getattr(getattr(venv, "unwrapped", venv), "user_model", None)
        if user_model is None:
            raise ConfigError(f"{ITEM_SCORING_POLICY} needs the simulator's catalog: pass user_model= to build_agent "
                              "(a driftrec VecEnv carries it)")
        try:
            kwargs["policy_kwargs"]["catalog"] = catalog_kwargs(user_model)
        except ValueError as err:
            raise ConfigError(str(err)) from None
    try:
        return cls(item_scoring_policy(algo) if item_scoring else policy, venv, seed=seed,
                   tensorboard_log=tensorboard_log, verbose=verbose, device=device, **kwargs)
    except (TypeError, ValueError, AssertionError) as err:  # SB3 checks values with asserts
        raise ConfigError(f"{algo} rejected its hyperparameters: {' '.join(str(err).split())}") from None


# ------------------------------------------------------------------------------------- policy
class SB3Policy(Policy):
    """A trained SB3 model as a driftrec :class:`Policy` (deterministic ``predict`` by default).

    Propensities are None: a deterministic policy gives its action probability 1, which says
    nothing an off-policy estimator could use. MaskablePPO reads the action mask.
    """

    reads_hidden_state = False
    uses_mask = False

    def __init__(self, agent: BaseAlgorithm, deterministic: bool = True):
        self.agent = agent
        self.deterministic = deterministic
        self.uses_mask = isinstance(agent, MaskablePPO)

    def act(self, obs: np.ndarray | dict[str, np.ndarray], mask: np.ndarray | None = None, *,
            state: Any = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Actions of the model for a batch of observations."""
        if self.uses_mask:
            actions, _ = self.agent.predict(obs, action_masks=mask, deterministic=self.deterministic)  # type: ignore[call-arg]
        else:
            actions, _ = self.agent.predict(obs, deterministic=self.deterministic)
        return np.asarray(actions, dtype=np.int64), None

    def reset(self, n_users: int) -> None:
        """Nothing to reset: the policies are feed-forward (history obs carry the memory)."""
        return None


# ------------------------------------------------------------------------------------- save, load, spec
class EnvSpecError(ConfigError):
    """A saved model's environment differs from the one it is asked to act in."""


def space_text(space: spaces.Space) -> str:
    """A short exact description of a space: ``Box(64,) float32 in [-1, 1]``, ``Discrete(20)``..."""
    if isinstance(space, spaces.Box):
        return f"Box{space.shape} {space.dtype} in [{float(space.low.min()):g}, {float(space.high.max()):g}]"
    if isinstance(space, spaces.Discrete):
        return f"Discrete({int(space.n)})"
    if isinstance(space, spaces.MultiDiscrete):
        values = np.unique(space.nvec)
        if len(values) == 1 and space.nvec.size > 4:
            return f"MultiDiscrete([{int(values[0])}] * {space.nvec.size})"
        return f"MultiDiscrete({space.nvec.tolist()})"
    if isinstance(space, spaces.Dict):
        return "Dict(" + ", ".join(f"{k}: {space_text(v)}" for k, v in space.spaces.items()) + ")"
    return str(space)


def env_spec(cfg: SimConfig, user_model: Any | None = None) -> dict[str, Any]:
    """The environment part of a spec: spaces (as text) and the observation layout."""
    user_model = user_model if user_model is not None else build_user_model(cfg)
    return {
        "observation_space": space_text(user_model.observation_space),
        "action_space": space_text(user_model.action_space),
        "layout": {name: [s.start, s.stop] for name, s in user_model.layout.slices().items()},
    }


def save_agent(agent: BaseAlgorithm, out: str | Path, spec: Mapping[str, Any]) -> Path:
    """Write ``out/model.zip`` then ``out/spec.yaml`` (each atomically; the spec last, so a folder
    with a spec holds a complete model). Returns the model path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "model.zip"
    partial = out / "model.zip.partial"
    agent.save(partial)
    os.replace(partial, path)
    _write_yaml(out / "spec.yaml", dict(spec))
    return path


def _write_yaml(path: Path, data: dict[str, Any]) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=120))
    os.replace(partial, path)


def read_spec(run: str | Path) -> dict[str, Any]:
    """The ``spec.yaml`` of a run folder (or of the folder of a ``model.zip``)."""
    run = Path(run)
    folder = run.parent if run.suffix == ".zip" else run
    path = folder / "spec.yaml"
    if not folder.is_dir():
        raise ConfigError(f"run folder '{folder}' does not exist")
    if not path.is_file():
        if (folder / "model.pt").exists() or (folder / "metrics.json").is_file():  # `driftrec train mlp|gru|...`
            model_pt = check_supervised_file(folder / "model.pt")
            raise ConfigError(f"'{model_pt}' is a supervised model, not an RL agent: this command takes the run "
                              f"folder of `driftrec train {'|'.join(ALGORITHMS)}`")
        raise ConfigError(f"'{folder}' holds no trained model: spec.yaml is missing (train with `driftrec train`)")
    try:
        spec = yaml.safe_load(path.read_text())
    except yaml.YAMLError:
        raise ConfigError(f"'{path}' is not valid YAML") from None
    if not isinstance(spec, dict) or "algo" not in spec or "config" not in spec:
        raise ConfigError(f"'{path}' is not a driftrec model spec (no 'algo' or 'config')")
    return spec


def load_agent(run: str | Path, device: str = "cpu") -> tuple[BaseAlgorithm, dict[str, Any]]:
    """The SB3 model of a run folder (``model.zip``; a path to a zip loads that zip) and its spec.

    A missing, truncated or foreign zip raises :class:`~driftrec.agents.model_file.ModelFileError`
    (one line naming the file)."""
    run = Path(run)
    spec = read_spec(run)
    algo = str(spec["algo"])
    cls = algorithm(algo)
    path = check_agent_file(run if run.suffix == ".zip" else run / "model.zip", algo)
    try:
        return cls.load(path, device=device), spec
    except Exception as err:  # SB3 raises many types for an archive it cannot read
        raise unreadable(path, f"{algo} agent", err) from None


def spec_config(spec: Mapping[str, Any]) -> SimConfig:
    """The resolved SimConfig a spec records (keys this version no longer knows are dropped)."""
    known = {f.name for f in dataclasses.fields(SimConfig)}
    return SimConfig.from_dict({k: v for k, v in dict(spec["config"]).items() if k in known})


def check_env_spec(spec: Mapping[str, Any], cfg: SimConfig, agent: BaseAlgorithm | None = None) -> list[str]:
    """Raise EnvSpecError (one line naming what differs) when ``cfg``'s spaces differ from those
    the spec's model was trained on; returns notes on harmless-looking differences (a catalog
    mode model meeting a different catalog) for the caller to print."""
    trained = spec_config(spec)
    here = build_user_model(cfg)
    obs_space = agent.observation_space if agent is not None else None
    act_space = agent.action_space if agent is not None else None
    spec_env = spec.get("env", {})
    same_obs = (obs_space == here.observation_space) if obs_space is not None else \
        spec_env.get("observation_space") == space_text(here.observation_space)
    same_act = (act_space == here.action_space) if act_space is not None else \
        spec_env.get("action_space") == space_text(here.action_space)
    same_layout = spec_env.get("layout", None) in (None, env_spec(cfg, here)["layout"])
    diff = {k: (v, getattr(cfg, k)) for k, v in trained.to_dict().items() if getattr(cfg, k) != v}
    if not (same_obs and same_act and same_layout):
        what = []
        if not (same_obs and same_layout):
            trained_obs = spec_env.get("observation_space", "?")
            what.append(f"observations {trained_obs} vs {space_text(here.observation_space)}")
        if not same_act:
            what.append(f"actions {spec_env.get('action_space', '?')} vs {space_text(here.action_space)}")
        keys = [k for k in diff if _shapes_spaces(trained, k, diff[k][1])] or list(diff)
        because = ", ".join(f"{k} {diff[k][0]!r} vs {diff[k][1]!r}" for k in keys)
        raise EnvSpecError(f"the model was trained on a different environment ({'; '.join(what)})"
                           + (f": {because}" if because else ""))
    notes = []
    if cfg.action_mode == "catalog" and not _same_catalog(build_user_model(trained).world, here.world):
        keys = [k for k in diff if k in _CATALOG_KEYS] or ["the catalog"]
        notes.append(f"the catalog differs from training's ({', '.join(keys)}): item ids name different items")
    return notes


_CATALOG_KEYS = ("world_seed", "n_items", "n_categories", "topic_dim", "topic_noise", "appeal_scale", "quality_scale",
                 "appeal_quality_corr", "price_mean", "price_spread")


def _shapes_spaces(cfg: SimConfig, key: str, value: Any) -> bool:
    """Whether setting ``key`` alone to ``value`` changes the spaces or layout of ``cfg``."""
    base = build_user_model(cfg)
    try:
        other = build_user_model(dataclasses.replace(cfg, **{key: value}))
    except ConfigError:  # e.g. n_items below n_categories: the key matters
        return True
    return (other.observation_space != base.observation_space or other.action_space != base.action_space
            or other.layout.slices() != base.layout.slices())


def _same_catalog(a: Any, b: Any) -> bool:
    fields = ("category", "topic", "appeal", "quality", "price")
    return all(getattr(a, f).shape == getattr(b, f).shape and np.array_equal(getattr(a, f), getattr(b, f))
               for f in fields)
