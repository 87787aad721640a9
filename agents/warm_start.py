"""Warm starts: initialise an RL agent from what the logs teach, then fine-tune it by RL.

Production RL recommenders rarely start from scratch: the logs that train the supervised models
also initialise the agent, and RL in the simulator fine-tunes it. Here the teacher is a trained
supervised model (:mod:`driftrec.agents.supervised`) and the agent learns to act as the teacher's
policy acts (policy distillation, Rusu et al. 2016): on observations of the logged requests the
agent's action scores are fitted to the teacher's expected immediate reward of every action
(P(click) * (reward_click + P(purchase | click) * purchase value), what
:class:`~driftrec.agents.supervised.SupervisedPolicy` maximises):

- actor-critics (PPO, A2C, MaskablePPO): cross-entropy of the actor's logits against
  ``softmax(sharpness * z)``, with ``z`` the teacher's rewards standardised per request, so the
  agent's most likely action is the teacher's best while the others keep some probability for
  RL to explore; slate position ``k`` learns the same with the teacher's ``k`` best items removed
  (the teacher's slate is its top-K distinct items);
- value-based agents (DQN, QR-DQN): the same cross-entropy on the Q-values read as logits at a
  temperature of 0.1 (every quantile alike), so the greedy action is the teacher's and the
  Q-values differ by a few tenths between actions; the target network is synchronised;
- the critic or the Q-values' level is fitted to the discounted return of each logged request
  under the logging policy (its rewards are in the log), a pessimistic but calibrated start for
  RL's bootstrapped targets.

Works for every policy (item-scoring or flat MLP), catalog mode, ``features`` and ``history``
observations. The observations are rebuilt from the log exactly as the simulator shows them
(:func:`driftrec.agents.supervised.data.build_examples`), demographics from the log's users table;
where a user's demographics are unknown the agent sees fresh random buckets at every batch of the
distillation and learns, as the teacher knows, that they say nothing there, instead of keeping
the random reading of its initial weights. Candidates mode
needs the request's candidates, which no log holds: ``source="rollout"`` then collects the
observations by running the teacher in the simulator on training users (their requests count as
environment interaction: :attr:`WarmStartReport.env_steps`).

In a run: ``run_train(config, callbacks=[WarmStart(teacher, user_model, events=logs)])``
distils before the first RL step (:class:`WarmStart`); or call :func:`warm_start` on a built agent.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from gymnasium import spaces
from sb3_contrib import QRDQN
from stable_baselines3 import DQN
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.policies import ActorCriticPolicy

from driftrec.agents.supervised.base import SupervisedNetwork
from driftrec.agents.supervised.data import FeatureSpec, build_examples
from driftrec.agents.supervised.policy import SupervisedPolicy
from driftrec.agents.supervised.registry import load_network
from driftrec.envs.config import ConfigError
from driftrec.envs.events import load_events, load_users
from driftrec.envs.policy import Policy
from driftrec.envs.rollout import rollout, train_seeds
from driftrec.envs.world import N_AGE, N_GENDER, N_INCOME

__all__ = ["WarmStart", "WarmStartReport", "load_teacher", "warm_start"]

Q_TEMPERATURE = 0.1
"""Value-based agents: Q-value differences of 0.1 (about a tenth of a click's reward) count as one
logit of the teacher's distribution, so the distilled Q-values differ between actions by a few
tenths: the scale of the one-step reward differences that RL's targets will then refine."""



@dataclasses.dataclass
class WarmStartReport:
    """What :func:`warm_start` did."""

    teacher: str  # the supervised model's kind
    source: str  # "logs" or "rollout"
    observations: int  # requests distilled on
    steps: int  # gradient steps
    seconds: float
    env_steps: int  # simulator requests spent collecting observations (0 for logs)
    agreement: float  # share of held-out requests where the agent's greedy first action is the teacher's
    loss: list[float]  # mean distillation loss of each pass over the requests

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_teacher(teacher: Any) -> Any:
    """A :class:`~driftrec.agents.supervised.SupervisedNetwork`, from itself, a run folder of
    ``driftrec train mlp|gru|transformer`` (holding ``model.pt``) or the ``model.pt`` file."""
    if isinstance(teacher, SupervisedNetwork):
        return teacher
    path = Path(teacher)
    return load_network(path / "model.pt" if path.is_dir() else path)


# ------------------------------------------------------------------------------------- observations
def _observations_from_logs(events: pd.DataFrame, users: pd.DataFrame | None, teacher: Any, user_model: Any,
                            gamma: float, rng: np.random.Generator, max_observations: int) -> tuple[Any, np.ndarray]:
    """(observations as the simulator shows them, discounted return of each) of the logged requests."""
    cfg = user_model.cfg
    if user_model.m:
        raise ConfigError("a warm start from logs needs catalog mode: the log does not hold each request's "
                          "candidates; use source='rollout'")
    if cfg.obs_mode not in ("features", "history"):
        raise ConfigError(f"a warm start from logs needs obs_mode features or history, not {cfg.obs_mode!r}")
    spec = FeatureSpec.from_user_model(user_model)
    why = teacher.spec.mismatch(spec, teacher.sequence)
    if why:
        raise ConfigError(f"the {teacher.kind} model cannot read this simulator's observations: {why}")
    ex = build_examples(events, spec, users) if users is not None else build_examples(events, spec)
    if len(ex) == 0:
        raise ConfigError("the log holds no request to warm-start from")
    # the reward of each request: its impressions' clicks and purchases, weighted as the simulator's
    price = np.asarray(user_model.world.price)[ex.item]
    earned = cfg.reward_click * ex.click + ex.purchase * (cfg.reward_purchase + cfg.reward_revenue * price)
    per_request = pd.DataFrame({"user_id": ex.user_id, "time": ex.time, "reward": earned}) \
        .groupby(["user_id", "time"], sort=False)["reward"].sum()
    first = np.flatnonzero(ex.position == 0)  # one row per request
    ex = ex.take(first)
    reward = per_request.reindex(pd.MultiIndex.from_arrays([ex.user_id, ex.time])).to_numpy(dtype=np.float64)
    returns = _discounted_returns(ex.user_id, ex.time, reward, gamma)
    rows = np.arange(len(ex))
    if len(rows) > max_observations:
        rows = np.sort(rng.choice(rows, size=max_observations, replace=False))
    n = len(rows)
    flat = np.zeros((n, user_model.layout.size), dtype=np.float32)
    flat[:, :spec.user_dim] = ex.user[rows]
    if cfg.obs_mode == "history":
        obs: Any = {"features": flat, "item_ids": ex.hist_item[rows].astype(np.int64),
                    "behaviours": ex.hist_beh[rows].astype(np.int64)}
    else:
        obs = flat
    return obs, returns[rows].astype(np.float32)


class _Demographics:
    """Fresh random demographic buckets, at every batch, for the requests whose user's demographics
    the log does not know: the teacher cannot read them there, so neither should the agent."""

    def __init__(self, obs: Any, user_model: Any, rng: np.random.Generator):
        self.columns = user_model.layout["demographics"]
        self.unknown = ~np.asarray(_flat(obs)[:, self.columns]).any(axis=1)
        self.rng = rng

    def fill(self, batch: Any, rows: np.ndarray) -> Any:
        unknown = self.unknown[rows]
        if unknown.any():
            flat = _flat(batch)
            flat[np.ix_(unknown, np.arange(self.columns.start, self.columns.stop))] = \
                _random_demographics(int(unknown.sum()), self.rng)
        return batch


def _flat(obs: Any) -> np.ndarray:
    return obs["features"] if isinstance(obs, dict) else obs


def _random_demographics(n: int, rng: np.random.Generator) -> np.ndarray:
    out = np.zeros((n, N_AGE + N_GENDER + N_INCOME), dtype=np.float32)
    start = 0
    for width in (N_AGE, N_GENDER, N_INCOME):
        out[np.arange(n), start + rng.integers(0, width, size=n)] = 1.0
        start += width
    return out


def _discounted_returns(user_id: np.ndarray, t: np.ndarray, reward: np.ndarray, gamma: float) -> np.ndarray:
    """Reward-to-go of each request of its user's life (requests in time order), discounted by ``gamma``."""
    order = np.lexsort((t, user_id))
    out = np.empty(len(reward))
    uid, r = user_id[order], reward[order]
    acc, last = 0.0, None
    ret = np.empty(len(r))
    for j in range(len(r) - 1, -1, -1):  # one pass; the logs of a quick run hold ~10^5 requests
        if uid[j] != last:
            acc, last = 0.0, uid[j]
        acc = r[j] + gamma * acc
        ret[j] = acc
    out[order] = ret
    return out


class _Recorder(Policy):
    """The teacher's policy, recording each batch's observations and the teacher's expected reward
    of every action (in candidates mode from the candidates' ids in the state, as the teacher reads them)."""

    def __init__(self, teacher_policy: Any):
        self.teacher = teacher_policy
        self.reads_hidden_state = teacher_policy.reads_hidden_state
        self.obs: list[Any] = []
        self.rewards: list[np.ndarray] = []

    def act(self, obs: Any, mask: np.ndarray | None = None, *, state: Any = None) -> tuple[np.ndarray, Any]:
        self.obs.append(_copy_obs(obs))
        self.rewards.append(self.teacher.expected_reward(obs, state))
        return self.teacher.act(obs, mask, state=state)


def _observations_from_rollout(teacher_policy: Any, user_model: Any, users: int, seed: int,
                               rng: np.random.Generator, max_observations: int) -> tuple[Any, np.ndarray, int]:
    """Observations of the teacher serving ``users`` training users, its expected rewards there, and
    the requests spent."""
    recorder = _Recorder(teacher_policy)
    rollout(user_model, recorder, train_seeds(seed, users))
    obs = _concat_obs(recorder.obs)
    rewards = np.concatenate(recorder.rewards)
    n = len(rewards)
    keep = np.arange(n)
    if n > max_observations:
        keep = np.sort(rng.choice(n, size=max_observations, replace=False))
    return _index_obs(obs, keep), rewards[keep], n


def _copy_obs(obs: Any) -> Any:
    if isinstance(obs, dict):
        return {k: np.array(v) for k, v in obs.items()}
    return np.array(obs)


def _concat_obs(parts: list[Any]) -> Any:
    if isinstance(parts[0], dict):
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return np.concatenate(parts)


def _index_obs(obs: Any, rows: np.ndarray) -> Any:
    if isinstance(obs, dict):
        return {k: v[rows] for k, v in obs.items()}
    return obs[rows]


# ------------------------------------------------------------------------------------- the agent's scores
def _agent_scores(agent: BaseAlgorithm, obs: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(B, K, n) action scores (logits or Q-values, the mean over quantiles for QR-DQN; B x K x n
    with K slate positions) and the (B,) critic value (None for value-based agents), with gradients."""
    policy = agent.policy
    tensor, _ = policy.obs_to_tensor(obs)
    if isinstance(agent, QRDQN):
        quantiles = policy.quantile_net(tensor)  # (B, n_quantiles, n)
        return quantiles[:, :, None, :], None
    if isinstance(agent, DQN):
        return policy.q_net(tensor)[:, None, None, :], None
    if not isinstance(policy, ActorCriticPolicy):
        raise ConfigError(f"warm starts support PPO, A2C, MaskablePPO, DQN and QR-DQN, not {type(agent).__name__}")
    features = policy.extract_features(tensor)
    if policy.share_features_extractor:
        latent_pi, latent_vf = policy.mlp_extractor(features)
    else:
        latent_pi = policy.mlp_extractor.forward_actor(features[0])
        latent_vf = policy.mlp_extractor.forward_critic(features[1])
    logits = policy.action_net(latent_pi)
    k = int(np.asarray(agent.action_space.nvec).size) if isinstance(agent.action_space, spaces.MultiDiscrete) else 1
    return logits.reshape(logits.shape[0], 1, k, -1), policy.value_net(latent_vf)[:, 0]


def _teacher_targets(reward: np.ndarray, k: int) -> np.ndarray:
    """(B, K, n) the teacher's expected reward of each action (B, n), standardised per request, with
    the teacher's first k actions removed (-inf) at slate position k."""
    z = (reward - reward.mean(1, keepdims=True)) / np.maximum(reward.std(1, keepdims=True), 1e-6)
    out = np.repeat(z[:, None, :], k, axis=1)
    if k > 1:
        order = np.argsort(-reward, axis=1, kind="stable")
        for pos in range(1, k):
            np.put_along_axis(out[:, pos], order[:, :pos], -np.inf, axis=1)
    return out.astype(np.float32)


# ------------------------------------------------------------------------------------- warm start
def warm_start(agent: BaseAlgorithm, teacher: Any, user_model: Any, *,
               events: pd.DataFrame | str | Path | None = None, users_table: pd.DataFrame | None = None,
               source: str | None = None, users: int = 500, seed: int = 0, steps: int = 500, batch_size: int = 256,
               lr: float = 1e-3, sharpness: float = 2.0, smoothing: float = 0.2, value_weight: float = 0.5,
               max_observations: int = 20_000, holdout: float = 0.1) -> WarmStartReport:
    """Initialise ``agent`` (built, untrained or not) to act as the supervised ``teacher`` does.

    :param agent: an SB3 PPO, A2C, MaskablePPO, DQN or QR-DQN on ``user_model``'s spaces
    :param teacher: a SupervisedNetwork, its run folder (``model.pt`` inside) or its ``model.pt``
    :param user_model: the simulator (``driftrec.envs.user_model.build_user_model``) the agent acts in
    :param events: the event log the teacher was trained on (a DataFrame or a Parquet path)
    :param users_table: the log's users table (demographics); read from beside ``events`` when that is a path
    :param source: ``"logs"`` (default when ``events`` is given): the logged requests;
        ``"rollout"``: ``users`` training users served by the teacher in the simulator
    :param users: rollout source: users to run the teacher on
    :param seed: seeds the sampling of observations and of unknown demographics, and the rollout users
    :param steps: gradient steps (shuffled passes over the observations until this many)
    :param batch_size: requests per gradient step
    :param lr: Adam learning rate of the distillation (a fresh optimizer; the agent's is untouched)
    :param sharpness: actor-critics: the target is softmax(sharpness * standardised teacher reward)
    :param smoothing: actor-critics: the target keeps this much of its probability uniform over the
        actions (label smoothing), so the agent starts as greedy as the teacher but explores as RL needs
    :param value_weight: weight of the critic's / Q-level's return regression in the loss
    :param max_observations: a random subset of at most this many requests is distilled on
    :param holdout: share of the requests kept out of training to measure the agreement
    :returns: a :class:`WarmStartReport`
    """
    start = time.perf_counter()
    network = load_teacher(teacher)
    policy = SupervisedPolicy(network, user_model)
    if isinstance(events, (str, Path)):
        if users_table is None:
            users_table = load_users(events)  # beside the log when it has one
        events = load_events(events)
    source = source or ("logs" if events is not None else "rollout")
    rng = np.random.default_rng(seed)
    gamma = float(getattr(agent, "gamma", 0.99))
    if source == "logs":
        if events is None:
            raise ConfigError("source='logs' needs events= (the log the teacher was trained on)")
        obs, returns = _observations_from_logs(events, users_table, network, user_model, gamma, rng,
                                               max_observations)
        reward = policy.expected_reward(obs)
        env_steps = 0
    elif source == "rollout":
        obs, reward, env_steps = _observations_from_rollout(policy, user_model, users, seed, rng, max_observations)
        returns = np.full(len(reward), np.nan, dtype=np.float32)  # the teacher's returns are not recorded
    else:
        raise ConfigError(f"warm start source must be 'logs' or 'rollout', got {source!r}")
    n = len(returns)
    demographics = _Demographics(obs, user_model, rng)
    value_based = isinstance(agent, DQN | QRDQN)
    targets = _teacher_targets(reward, int(user_model.k))
    perm = rng.permutation(n)
    n_held = min(max(int(round(holdout * n)), 1), n - 1) if n > 1 else 0
    held, train = perm[:n_held], perm[n_held:]
    params = list(agent.policy.q_net.parameters()) if isinstance(agent, DQN) else \
        list(agent.policy.quantile_net.parameters()) if isinstance(agent, QRDQN) else list(agent.policy.parameters())
    opt = torch.optim.Adam(params, lr=lr)
    gen = torch.Generator().manual_seed(seed)
    agent.policy.set_training_mode(True)
    curve: list[float] = []
    targets_t = torch.from_numpy(targets)
    returns_t = torch.from_numpy(returns)
    done = 0
    while done < steps:  # one pass over the training requests per round, each a point of the curve
        order = train[torch.randperm(len(train), generator=gen).numpy()]
        total, count = 0.0, 0
        for lo in range(0, len(order), batch_size):
            if done == steps:
                break
            rows = order[lo:lo + batch_size]
            scores, value = _agent_scores(agent, demographics.fill(_index_obs(obs, rows), rows))
            target = targets_t[rows]
            if value_based:
                loss = _value_based_loss(scores, target, returns_t[rows], sharpness, value_weight)
            else:
                loss = _actor_critic_loss(scores[:, 0], value, target, returns_t[rows], sharpness, value_weight,
                                          smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(rows)
            count += len(rows)
            done += 1
        curve.append(total / max(count, 1))
    agent.policy.set_training_mode(False)
    if isinstance(agent, DQN):
        agent.policy.q_net_target.load_state_dict(agent.policy.q_net.state_dict())
    elif isinstance(agent, QRDQN):
        agent.policy.quantile_net_target.load_state_dict(agent.policy.quantile_net.state_dict())
    agreement = _agreement(agent, demographics.fill(_index_obs(obs, held), held), targets[held])
    return WarmStartReport(teacher=network.kind, source=source, observations=n, steps=steps,
                           seconds=time.perf_counter() - start, env_steps=env_steps, agreement=agreement,
                           loss=curve)


def _actor_critic_loss(logits: torch.Tensor, value: torch.Tensor | None, target: torch.Tensor, returns: torch.Tensor,
                       sharpness: float, value_weight: float, smoothing: float) -> torch.Tensor:
    """Cross-entropy of the logits (B, K, n) against softmax(sharpness * target) mixed with the
    uniform distribution over the allowed actions (weight ``smoothing``) per slate position, plus
    the critic's squared error to the returns."""
    soft = torch.softmax(sharpness * target, dim=-1)
    if smoothing:
        allowed = torch.isfinite(target).float()
        soft = (1.0 - smoothing) * soft + smoothing * allowed / allowed.sum(-1, keepdim=True)
    logp = torch.log_softmax(logits, dim=-1)
    ce = -(soft * torch.where(soft > 0, logp, torch.zeros_like(logp))).sum(-1).mean()
    if value is None or value_weight == 0 or torch.isnan(returns).all():
        return ce
    return ce + value_weight * torch.mean((value - returns) ** 2)


def _value_based_loss(scores: torch.Tensor, target: torch.Tensor, returns: torch.Tensor, sharpness: float,
                      value_weight: float) -> torch.Tensor:
    """The actor's cross-entropy on the Q-values (B, Q, 1, n) read as logits at temperature
    :data:`Q_TEMPERATURE` (every quantile alike), plus the squared error of their mean over the
    actions (the level) to the returns."""
    q = scores[:, :, 0, :]
    soft = torch.softmax(sharpness * target[:, 0], dim=-1)[:, None, :]
    ce = -(soft * torch.log_softmax(q / Q_TEMPERATURE, dim=-1)).sum(-1).mean()
    if value_weight == 0 or torch.isnan(returns).all():
        return ce
    return ce + value_weight * torch.mean((q.mean(-1) - returns[:, None]) ** 2)


@torch.no_grad()
def _agreement(agent: BaseAlgorithm, obs: Any, targets: np.ndarray) -> float:
    """Share of the requests ``obs`` where the agent's greedy first-position action is the teacher's best."""
    if len(targets) == 0:
        return math.nan
    scores, _ = _agent_scores(agent, obs)
    mine = scores.mean(1)[:, 0].argmax(-1).numpy()
    return float(np.mean(mine == targets[:, 0].argmax(-1)))


class WarmStart(BaseCallback):
    """An SB3 callback that warm-starts the agent when its training starts (see :func:`warm_start`).

    ``run_train(config, callbacks=[WarmStart(teacher, user_model, events=logs)])``; the report is in
    :attr:`report` once training has begun. Keyword arguments go to :func:`warm_start`.
    """

    def __init__(self, teacher: Any, user_model: Any, **kwargs: Any):
        super().__init__()
        self.teacher, self.user_model, self.kwargs = teacher, user_model, kwargs
        self.report: WarmStartReport | None = None

    def _on_training_start(self) -> None:
        if self.report is None:  # once, even if learn() is called again
            self.report = warm_start(self.model, self.teacher, self.user_model, **self.kwargs)

    def _on_step(self) -> bool:
        return True
