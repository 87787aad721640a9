"""Policies by name: :data:`POLICIES` (name -> factory) and :func:`make_policy`, which the CLI,
the harness and tuning use to build a reference policy from a name and its options.

The factories live here, above :mod:`driftrec.agents.policies` and
:mod:`driftrec.agents.planner` (which builds on it), so that neither needs the other lazily.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from driftrec.agents.planner import DEFAULT_GRID, DEFAULT_VALIDATION_USERS, OraclePlannerPolicy, tune_planner
from driftrec.agents.policies import (
    DEFAULT_BURN_IN_USERS,
    DEFAULT_EPSILON,
    LoggingPolicy,
    OracleGreedyPolicy,
    PopularityPolicy,
    RandomPolicy,
    burn_in_events,
)
from driftrec.envs.config import ConfigError
from driftrec.envs.policy import Policy

if TYPE_CHECKING:
    import pandas as pd

PolicyFactory = Callable[..., Policy]


def _random(user_model: Any, n_users: int, seed: int | None) -> Policy:
    return RandomPolicy(user_model.action_space, n_users, seed)


def _popularity(user_model: Any, n_users: int, seed: int | None, events: pd.DataFrame | None = None,
                burn_in_users: int = DEFAULT_BURN_IN_USERS) -> Policy:
    """Popularity from ``events``, or from a random burn-in log (see :func:`burn_in_events`)."""
    if events is None:
        events = burn_in_events(user_model, seed, burn_in_users)
    return PopularityPolicy(user_model, events)


def _oracle(user_model: Any, n_users: int, seed: int | None) -> Policy:
    return OracleGreedyPolicy(user_model)


def _oracle_planner(user_model: Any, n_users: int, seed: int | None, future_weight: float | None = None,
                    validation_users: int | None = None, grid: list[float] | tuple[float, ...] | None = None) -> Policy:
    """oracle-planner with ``future_weight``, or tuned on the run's validation users (seed ``seed``)."""
    if future_weight is not None:
        return OraclePlannerPolicy(user_model, future_weight)
    return tune_planner(user_model, seed, DEFAULT_VALIDATION_USERS if validation_users is None else validation_users,
                        DEFAULT_GRID if grid is None else grid)


def _logging(user_model: Any, n_users: int, seed: int | None, epsilon: float = DEFAULT_EPSILON,
             events: pd.DataFrame | None = None, burn_in_users: int = DEFAULT_BURN_IN_USERS) -> Policy:
    return LoggingPolicy(user_model, seed, epsilon=epsilon, events=events, burn_in_users=burn_in_users)


POLICIES: dict[str, PolicyFactory] = {
    "random": _random,
    "popularity": _popularity,
    "oracle-greedy": _oracle,
    "oracle-planner": _oracle_planner,
    "logging": _logging,
}
"""Policy name -> factory ``(model, n_users, seed, **options) -> Policy``. Options:
popularity ``events``, ``burn_in_users``; logging ``epsilon``, ``events``, ``burn_in_users``;
oracle-planner ``future_weight`` (fixed, no tuning), ``validation_users``, ``grid``."""


def make_policy(name: str, user_model: Any, n_users: int, seed: int | None = None, **options: Any) -> Policy:
    """The policy called ``name`` for ``n_users`` users of ``user_model``, with its ``options``.

    Unknown names and options the policy does not take raise ConfigError (one line).
    """
    if name not in POLICIES:
        raise ConfigError(f"unknown policy '{name}'; choose one of: {', '.join(POLICIES)}")
    factory = POLICIES[name]
    params = inspect.signature(factory).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    accepted = [p for p in list(params)[3:] if params[p].kind is not inspect.Parameter.VAR_KEYWORD]
    for option in options:
        if not takes_any and option not in accepted:
            takes = f"takes {', '.join(accepted)}" if accepted else "takes no options"
            raise ConfigError(f"policy '{name}' has no option '{option}' ({takes})")
    return factory(user_model, n_users, seed, **options)

