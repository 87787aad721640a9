"""Determinism and shell equivalence: seeds reproduce, the three shells drive the same users.

The single-user ``ShopSimEnv``, the SB3 ``ShopSimVecEnv`` (immediate autoreset) and the
Gymnasium ``ShopSimVectorEnv`` (next-step autoreset) must agree exactly, user for user, across
the end of lives: two implementations of the same dynamics drift apart unless a test compares
them. Lives are kept short (2 days, likelier churn; a small recsim-ie budget) so that episodes
end, by both churn and the horizon, during each test.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

from driftrec.envs import ENV_ID, PRESETS, ShopSimEnv, ShopSimVectorEnv, make_vec_env, preset_config
from driftrec.envs import rng as rngs
from driftrec.envs.state import copy_state
from driftrec.envs.user_model import build_user_model

PRESET_NAMES = list(PRESETS)


def is_recsim(preset: str) -> bool:
    """Whether the preset uses the RecSim interest-evolution model (candidates-only)."""
    return PRESETS[preset].overrides.get("model") == "recsim-ie"


def short_life(preset: str) -> dict[str, Any]:
    """Overrides under which lives end within tens of steps, by churn and by the horizon."""
    if is_recsim(preset):
        return {"recsim_budget": 5.0}
    return {"horizon_days": 2.0, "churn_bias": -1.0}


def random_actions(space: spaces.Space, n_steps: int, n_users: int, seed: int) -> np.ndarray:
    """(n_steps, n_users[, K]) actions drawn from a seeded generator, valid for ``space``."""
    rng = np.random.default_rng(seed)
    if isinstance(space, spaces.Discrete):
        return rng.integers(0, space.n, size=(n_steps, n_users))
    return rng.integers(0, space.nvec, size=(n_steps, n_users, len(space.nvec)))


def row(obs: Any, i: int) -> Any:
    """User ``i`` of a batched flat or Dict observation."""
    return {k: v[i] for k, v in obs.items()} if isinstance(obs, dict) else obs[i]


def assert_obs_equal(a: Any, b: Any) -> None:
    """Exact equality (values, dtype, keys) of two flat or Dict observations."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys()
        for k in a:
            assert_obs_equal(a[k], b[k])
        return
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype, (a.dtype, b.dtype)
    assert np.array_equal(a, b), f"max difference {np.max(np.abs(a.astype(float) - b.astype(float)))}"


# ------------------------------------------------------------------------------------ seeds

def _trajectory(preset: str, seed: int, n_steps: int = 120) -> list[Any]:
    """Everything a single env emits over ``n_steps`` fixed actions, resetting (unseeded) after done."""
    env = ShopSimEnv(preset, obs_mode="history", slate_size=2, **short_life(preset))
    out: list[Any] = [env.reset(seed=seed)]
    for a in random_actions(env.action_space, n_steps, 1, seed=99)[:, 0]:
        step = env.step(a)
        out.append(step)
        if step[2] or step[3]:
            out.append(env.reset())
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (tuple, list)):
        return isinstance(b, (tuple, list)) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_same_seed_same_trajectory_and_different_seeds_differ(preset: str) -> None:
    first, again, other = _trajectory(preset, 7), _trajectory(preset, 7), _trajectory(preset, 8)
    assert sum(len(x) == 2 for x in first) >= 3, "the trajectory should cross at least two resets"
    assert _same(first, again), "same seed, same actions: obs, rewards, dones and infos must repeat"
    assert not _same(first, other), "seeds 7 and 8 gave identical trajectories"
    assert not _same(first[0][0], other[0][0]), "seeds 7 and 8 gave the same first user"


# ------------------------------------------------------------------------------------ shells

SHELL_CASES = [(p, "history", PRESETS[p].overrides.get("action_mode", "catalog"), 1) for p in PRESET_NAMES]
SHELL_CASES += [("default", "oracle", "candidates", 3), ("default", "features", "catalog", 2),
                ("recsim-ie", "oracle", "candidates", 2)]
N_USERS, SEED, N_STEPS = 4, 11, 150


def _kw(preset: str, obs_mode: str, action_mode: str, slate_size: int) -> dict[str, Any]:
    return {"obs_mode": obs_mode, "action_mode": action_mode, "slate_size": slate_size, **short_life(preset)}


@pytest.mark.parametrize(("preset", "obs_mode", "action_mode", "slate_size"), SHELL_CASES)
def test_sb3_vec_env_equals_single_envs(preset: str, obs_mode: str, action_mode: str, slate_size: int) -> None:
    kw = _kw(preset, obs_mode, action_mode, slate_size)
    vec = make_vec_env(preset, N_USERS, seed=SEED, **kw)
    singles = [ShopSimEnv(preset, **kw) for _ in range(N_USERS)]
    vec_obs = vec.reset()
    for i, env in enumerate(singles):
        assert_obs_equal(row(vec_obs, i), env.reset(seed=SEED + i)[0])
    ends = {"terminated": 0, "truncated": 0}
    for actions in random_actions(vec.action_space, N_STEPS, N_USERS, seed=3):
        vec_obs, vec_rew, vec_done, infos = vec.step(actions)
        rew, term, trunc = np.zeros(N_USERS, dtype=np.float32), np.zeros(N_USERS, bool), np.zeros(N_USERS, bool)
        for i, env in enumerate(singles):
            obs, r, term[i], trunc[i], _ = env.step(actions[i])
            rew[i] = r
            if term[i] or trunc[i]:
                assert_obs_equal(infos[i]["terminal_observation"], obs)
                assert infos[i]["TimeLimit.truncated"] == bool(trunc[i] and not term[i])
                obs, _ = env.reset()  # unseeded: the slot's next life, as the VecEnv's autoreset
            else:
                assert "terminal_observation" not in infos[i]
            assert_obs_equal(row(vec_obs, i), obs)
        assert np.array_equal(vec_rew, rew) and np.array_equal(vec_done, term | trunc)
        ends["terminated"] += int(term.sum())
        ends["truncated"] += int(trunc.sum())
    assert ends["terminated"] >= 1, f"no life ended by termination in the test: {ends}"
    assert is_recsim(preset) or ends["truncated"] >= 1, f"no life reached the horizon in the test: {ends}"


@pytest.mark.parametrize(("preset", "obs_mode", "action_mode", "slate_size"), SHELL_CASES)
def test_gymnasium_vector_env_equals_single_envs(preset: str, obs_mode: str, action_mode: str,
                                                 slate_size: int) -> None:
    """Next-step autoreset: the step after a user's end ignores its action and returns the new
    life's first observation with reward 0, exactly as a single env's unseeded ``reset()``."""
    kw = _kw(preset, obs_mode, action_mode, slate_size)
    venv = ShopSimVectorEnv(N_USERS, preset=preset, **kw)
    singles = [ShopSimEnv(preset, **kw) for _ in range(N_USERS)]
    vec_obs, _ = venv.reset(seed=SEED)
    for i, env in enumerate(singles):
        assert_obs_equal(row(vec_obs, i), env.reset(seed=SEED + i)[0])
    pending = np.zeros(N_USERS, dtype=bool)
    autoresets = 0
    for actions in random_actions(venv.single_action_space, N_STEPS, N_USERS, seed=3):
        vec_obs, vec_rew, vec_term, vec_trunc, vec_info = venv.step(actions)
        rew, term, trunc = np.zeros(N_USERS), np.zeros(N_USERS, bool), np.zeros(N_USERS, bool)
        for i, env in enumerate(singles):
            if pending[i]:
                obs, _ = env.reset()
                pending[i] = False
                autoresets += 1
            else:
                obs, rew[i], term[i], trunc[i], info = env.step(actions[i])
                pending[i] = term[i] or trunc[i]
                assert vec_info["click"][i] == info["click"]
            assert_obs_equal(row(vec_obs, i), obs)
        assert np.array_equal(vec_rew, rew), (vec_rew, rew)
        assert np.array_equal(vec_term, term) and np.array_equal(vec_trunc, trunc)
    assert autoresets >= 2, "no autoreset happened during the test"


def test_make_vec_uses_the_vector_entry_point() -> None:
    made = gym.make_vec(ENV_ID, num_envs=3, vectorization_mode="vector_entry_point", preset="default", slate_size=2)
    assert isinstance(made.unwrapped, ShopSimVectorEnv)
    assert made.num_envs == 3 and made.unwrapped.config == preset_config("default", {"slate_size": 2})
    direct = ShopSimVectorEnv(3, preset="default", slate_size=2)
    assert_obs_equal(made.reset(seed=5)[0], direct.reset(seed=5)[0])
    actions = random_actions(direct.single_action_space, 20, 3, seed=0)
    for a in actions:
        got, want = made.step(a), direct.step(a)
        assert_obs_equal(got[0], want[0])
        for x, y in zip(got[1:4], want[1:4], strict=True):
            assert np.array_equal(x, y)


@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_a_user_does_not_depend_on_its_batch(preset: str) -> None:
    """User 3 of a batch of 4 is user 3 of a batch of 16 (same seed), whatever the others are shown."""
    kw = {"slate_size": 2, **short_life(preset)}
    small, big = make_vec_env(preset, 4, seed=SEED, **kw), make_vec_env(preset, 16, seed=SEED, **kw)
    big_actions = random_actions(big.action_space, N_STEPS, 16, seed=1)
    small_actions = random_actions(small.action_space, N_STEPS, 4, seed=2)  # other users see other slates
    small_actions[:, 3] = big_actions[:, 3]
    assert_obs_equal(row(small.reset(), 3), row(big.reset(), 3))
    ends = 0
    for a_small, a_big in zip(small_actions, big_actions, strict=True):
        s_obs, s_rew, s_done, s_info = small.step(a_small)
        b_obs, b_rew, b_done, b_info = big.step(a_big)
        assert_obs_equal(row(s_obs, 3), row(b_obs, 3))
        assert s_rew[3] == b_rew[3] and s_done[3] == b_done[3]
        if s_done[3]:
            assert_obs_equal(s_info[3]["terminal_observation"], b_info[3]["terminal_observation"])
            ends += 1
    assert ends >= 1, "user 3 never reached the end of a life in the test"


# ------------------------------------------------------------------------------------ purity

def _fields(obj: Any) -> dict[str, np.ndarray]:
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}


@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_model_step_is_pure(preset: str) -> None:
    """``step(state, a)`` (inplace=False) leaves ``state`` untouched, shares no memory with it and
    gives the same answer twice; ``observe`` and ``choice_probs`` leave it untouched too."""
    user_model = build_user_model(preset_config(preset, {"slate_size": 2, **short_life(preset)}))
    state = user_model.init(rngs.user_keys(np.arange(6)), np.zeros(6, dtype=np.int64))
    actions = random_actions(user_model.action_space, 21, 6, seed=5)
    for a in actions[:20]:  # move away from the fresh state: sessions, histories, finished lives
        state, out = user_model.step(state, a, inplace=True)
        user_model.reset_where(state, out.terminated | out.truncated)
    snapshot = copy_state(state)

    new, out = user_model.step(state, actions[20])
    again, out_again = user_model.step(state, actions[20])
    user_model.observe(state)
    user_model.choice_probs(state, user_model.slate_items(state, actions[20]))

    for name, value in _fields(state).items():
        assert value.dtype == getattr(snapshot, name).dtype
        assert np.array_equal(value, getattr(snapshot, name)), f"step modified state.{name}"
        assert not np.shares_memory(value, getattr(new, name)), f"new state aliases state.{name}"
    for name, value in _fields(new).items():
        assert np.array_equal(value, getattr(again, name)), f"state.{name} differs between two equal calls"
    for name, value in _fields(out).items():
        assert np.array_equal(value, getattr(out_again, name)), f"output {name} differs between two equal calls"
    assert not all(np.array_equal(v, getattr(state, k)) for k, v in _fields(new).items()), "step changed nothing"
