"""Conformance: both env checkers, honest spaces, registration, layout, masks, SB3 and pickling.

Every preset is run in every observation mode (features, history, oracle) and action mode
(catalog, candidates). recsim-ie supports only candidates: its catalog cases assert the
ConfigError instead. recsim-ie cases skip until ``driftrec.envs.recsim_ie`` exists (conftest).
"""

from __future__ import annotations

import copy
import pickle
import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from driftrec.envs import ENV_ID, PRESETS, ConfigError, ShopSimEnv, make_vec_env, preset_config
from driftrec.envs.user_model import build_user_model

PRESET_NAMES = list(PRESETS)
OBS_MODES = ("features", "history", "oracle")
ACTION_MODES = ("catalog", "candidates")


def is_recsim(preset: str) -> bool:
    """Whether the preset uses the RecSim interest-evolution model (candidates-only)."""
    return PRESETS[preset].overrides.get("model") == "recsim-ie"


def short_life(preset: str) -> dict[str, Any]:
    """Overrides that end episodes within tens of steps, so a short rollout crosses resets."""
    if is_recsim(preset):
        return {"recsim_budget": 5.0}  # 10 unclicked requests at 0.5 minutes each
    return {"horizon_days": 1.0}


def obs_arrays(obs: Any) -> list[np.ndarray]:
    """The arrays of a flat or Dict observation."""
    return list(obs.values()) if isinstance(obs, dict) else [obs]


# ------------------------------------------------------------------------------------ checkers

CHECK_CASES = [(p, o, a, 1) for p in PRESET_NAMES for o in OBS_MODES for a in ACTION_MODES]
CHECK_CASES += [(p, o, a, 3) for p in ("default", "recsim-ie") for o in OBS_MODES for a in ACTION_MODES]


def _run_checkers(env: gym.Env, obs_mode: str) -> None:
    """Both checkers must pass without warnings, except the oracle's documented infinite bounds."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gym_check_env(env)
        sb3_check_env(env, warn=True)
    allowed = ("infinity",) if obs_mode == "oracle" else ()
    unexpected = [str(w.message) for w in caught if not any(a in str(w.message) for a in allowed)]
    assert not unexpected, f"env checker warnings: {unexpected}"


@pytest.mark.parametrize(("preset", "obs_mode", "action_mode", "slate_size"), CHECK_CASES)
def test_env_checkers_pass(preset: str, obs_mode: str, action_mode: str, slate_size: int) -> None:
    overrides = {"obs_mode": obs_mode, "action_mode": action_mode, "slate_size": slate_size}
    if is_recsim(preset) and action_mode == "catalog":
        with pytest.raises(ConfigError, match="action_mode"):
            gym.make(ENV_ID, preset=preset, **overrides)
        return
    env = gym.make(ENV_ID, preset=preset, **overrides)
    # the raw env: wrappers from gym.make would trigger a "checking a wrapped env" warning
    _run_checkers(env.unwrapped, obs_mode)


# ------------------------------------------------------------------------------------ spaces

def _space_cases() -> list[tuple[str, str, str]]:
    return [(p, o, a) for p in PRESET_NAMES for o in OBS_MODES for a in ACTION_MODES
            if not (is_recsim(p) and a == "catalog")]


def _state_arrays(env: ShopSimEnv) -> list[np.ndarray]:
    return [v for v in vars(env.state).values() if isinstance(v, np.ndarray)]


@pytest.mark.parametrize(("preset", "obs_mode", "action_mode"), _space_cases())
def test_observations_lie_in_space_and_are_fresh(preset: str, obs_mode: str, action_mode: str) -> None:
    """300 random slates of 3 (duplicates included) across several lives: every observation is in
    the declared space, finite, and shares no memory with the previous one or the env's state."""
    env = ShopSimEnv(preset, obs_mode=obs_mode, action_mode=action_mode, slate_size=3, **short_life(preset))
    env.action_space.seed(0)
    obs, _ = env.reset(seed=0)
    resets = 0
    for _ in range(300):
        assert env.observation_space.contains(obs), f"observation outside {env.observation_space}"
        for arr in obs_arrays(obs):
            assert np.isfinite(arr).all()  # the oracle's bounds are infinite: check values directly
            assert not any(np.shares_memory(arr, s) for s in _state_arrays(env)), "observation aliases the state"
        prev = obs
        obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        assert isinstance(reward, float) and np.isfinite(reward)
        if terminated or truncated:
            assert env.observation_space.contains(obs)  # the last observation of a life too
            obs, _ = env.reset()
            resets += 1
        for old, new in zip(obs_arrays(prev), obs_arrays(obs), strict=True):
            assert not np.shares_memory(old, new)
    assert resets >= 3, "the rollout should cross several lives"


@pytest.mark.parametrize("obs_mode", OBS_MODES)
@pytest.mark.parametrize("preset", ["default", "recsim-ie"])
def test_mutating_an_observation_changes_nothing(preset: str, obs_mode: str) -> None:
    """Scribbling over every returned observation leaves the trajectory unchanged, in both shells."""
    kw = {"obs_mode": obs_mode, "action_mode": "candidates", "slate_size": 2, **short_life(preset)}
    actions = np.random.default_rng(1).integers(0, 10, size=(80, 2))

    def rollout(scribble: bool) -> list[np.ndarray]:
        env = ShopSimEnv(preset, **kw)
        seen = []
        obs, _ = env.reset(seed=5)
        for a in actions:
            seen.extend(np.copy(x) for x in obs_arrays(obs))
            if scribble:
                for x in obs_arrays(obs):
                    x[...] = 7
            obs, _, terminated, truncated, _ = env.step(a)
            if terminated or truncated:
                obs, _ = env.reset()
        return seen

    def vec_rollout(scribble: bool) -> list[np.ndarray]:
        vec = make_vec_env(preset, 3, seed=5, **kw)
        seen = []
        obs = vec.reset()
        for a in actions:
            seen.extend(np.copy(x) for x in obs_arrays(obs))
            if scribble:
                for x in obs_arrays(obs):
                    x[...] = 7
            obs, _, _, infos = vec.step(np.repeat(a[None], 3, axis=0))
            for info in infos:
                if "terminal_observation" in info:
                    seen.extend(np.copy(x) for x in obs_arrays(info["terminal_observation"]))
                    if scribble:
                        for x in obs_arrays(info["terminal_observation"]):
                            x[...] = 7
        return seen

    for run in (rollout, vec_rollout):
        clean, scribbled = run(False), run(True)
        assert len(clean) == len(scribbled)
        assert all(np.array_equal(a, b) for a, b in zip(clean, scribbled, strict=True)), run.__name__


# ------------------------------------------------------------------------------------ registration

def test_env_id_is_registered_with_both_entry_points() -> None:
    spec = gym.spec(ENV_ID)
    assert spec.entry_point == "driftrec.envs.shopsim:ShopSimEnv"
    assert spec.vector_entry_point == "driftrec.envs.vector:ShopSimVectorEnv"


@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_gym_make_builds_the_preset_with_overrides(preset: str) -> None:
    overrides = {"obs_mode": "history", "slate_size": 2, "history_len": 7}
    env = gym.make(ENV_ID, preset=preset, **overrides)
    assert env.unwrapped.config == preset_config(preset, overrides)
    assert env.observation_space["item_ids"].shape == (7,)
    assert env.action_space.shape == (2,)
    obs, _ = env.reset(seed=1)
    assert env.observation_space.contains(obs)
    obs, *_ = env.step(env.action_space.sample())
    assert env.observation_space.contains(obs)


def test_gym_make_rejects_an_unknown_key_by_name() -> None:
    with pytest.raises(ConfigError, match="slate_sise"):
        gym.make(ENV_ID, preset="default", slate_sise=3)


# ------------------------------------------------------------------------------------ layout

@pytest.mark.parametrize(("preset", "obs_mode", "action_mode"), _space_cases())
def test_layout_slices_tile_the_features_vector(preset: str, obs_mode: str, action_mode: str) -> None:
    user_model = build_user_model(preset_config(preset, {"obs_mode": obs_mode, "action_mode": action_mode}))
    space = user_model.observation_space
    flat = space["features"] if isinstance(space, spaces.Dict) else space
    parts = sorted(user_model.layout.parts.values(), key=lambda p: p.slice.start)
    assert parts, "empty layout"
    stop = 0
    for part in parts:
        assert part.slice.start == stop, f"gap or overlap before '{part.name}'"
        assert part.slice.step in (None, 1) and part.slice.stop > part.slice.start, part.name
        assert (flat.low[part.slice] == np.float32(part.low)).all(), part.name
        assert (flat.high[part.slice] == np.float32(part.high)).all(), part.name
        stop = part.slice.stop
    assert stop == user_model.layout.size == flat.shape[0]
    assert user_model.layout.describe().count("\n") == len(parts) + 1  # header, rule, one row per part


@pytest.mark.parametrize("action_mode", ACTION_MODES)
def test_layout_slices_hold_what_they_say(action_mode: str) -> None:
    """Content checks that catch an off-by-one slice: one-hot groups sum to one, sin^2 + cos^2 = 1."""
    env = ShopSimEnv("default", action_mode=action_mode, obs_mode="oracle", slate_size=2)
    lay = env.layout
    obs, _ = env.reset(seed=2)
    for a in np.random.default_rng(2).integers(0, env.action_space.nvec, size=(30, 2)):
        assert obs[lay["demographics"]].sum() == 3.0  # age, gender and income one-hots
        np.testing.assert_allclose(np.square(obs[lay["calendar"]]).sum(), 1.0, atol=1e-6)
        assert obs[lay["hidden_segment"]].sum() == 1.0
        if "candidates" in lay:
            block = obs[lay["candidates"]].reshape(env.user_model.m, -1)
            np.testing.assert_array_equal(block[:, :-1].sum(axis=1), 1.0)  # one category per candidate
        obs, *_ = env.step(a)


# ------------------------------------------------------------------------------------ masks and SB3

MASK_CASES = [("default", "catalog", 1), ("default", "candidates", 3), ("recsim-ie", "candidates", 2)]


def _n_actions(space: spaces.Space) -> int:
    return int(space.n) if isinstance(space, spaces.Discrete) else int(np.sum(space.nvec))


@pytest.mark.parametrize(("preset", "action_mode", "slate_size"), MASK_CASES)
def test_action_masks_have_the_flat_maskable_shape(preset: str, action_mode: str, slate_size: int) -> None:
    env = ShopSimEnv(preset, action_mode=action_mode, slate_size=slate_size)
    env.reset(seed=0)
    mask = env.action_masks()
    assert mask.dtype == bool and mask.shape == (_n_actions(env.action_space),)
    assert mask.reshape(slate_size, -1).any(axis=1).all(), "every slate position needs a valid action"
    vec = make_vec_env(preset, 4, seed=0, action_mode=action_mode, slate_size=slate_size)
    vec.reset()
    assert vec.action_masks().shape == (4, mask.shape[0])
    assert np.array_equal(np.stack(vec.env_method("action_masks")), vec.action_masks())


@pytest.mark.parametrize(("preset", "action_mode", "slate_size"), MASK_CASES)
def test_maskable_ppo_learns_on_masks(preset: str, action_mode: str, slate_size: int) -> None:
    from sb3_contrib import MaskablePPO
    from sb3_contrib.common.maskable.utils import get_action_masks, is_masking_supported

    vec = make_vec_env(preset, 4, seed=0, action_mode=action_mode, slate_size=slate_size)
    assert is_masking_supported(vec)
    user_model = MaskablePPO("MlpPolicy", vec, n_steps=16, batch_size=32, n_epochs=1, seed=0, device="cpu")
    user_model.learn(64)
    assert user_model.num_timesteps >= 64
    obs = vec.reset()
    action, _ = user_model.predict(obs, action_masks=get_action_masks(vec), deterministic=True)
    assert all(vec.action_space.contains(a) for a in action)


def test_maskable_ppo_learns_on_a_gym_made_env() -> None:
    """The single env's ``action_masks`` is reached through gym.make's wrappers and SB3's DummyVecEnv."""
    from sb3_contrib import MaskablePPO

    env = gym.make(ENV_ID, preset="default", action_mode="candidates", slate_size=2)
    user_model = MaskablePPO("MlpPolicy", env, n_steps=32, batch_size=32, n_epochs=1, seed=0, device="cpu")
    user_model.learn(64)
    assert user_model.num_timesteps >= 64
    obs, _ = env.reset(seed=0)
    action, _ = user_model.predict(obs, action_masks=env.unwrapped.action_masks(), deterministic=True)
    assert env.action_space.contains(action)


@pytest.mark.parametrize("algo", ["PPO", "DQN"])
def test_sb3_mlp_agents_learn_on_the_vec_env(algo: str) -> None:
    import stable_baselines3 as sb3
    from stable_baselines3.common.vec_env import VecMonitor

    # half-day lives so VecMonitor sees finished episodes within the smoke budget
    vec = VecMonitor(make_vec_env("stationary", 8, seed=0, horizon_days=0.5))
    if algo == "PPO":
        user_model = sb3.PPO("MlpPolicy", vec, n_steps=32, batch_size=64, n_epochs=1, seed=0, device="cpu")
    else:
        user_model = sb3.DQN("MlpPolicy", vec, learning_starts=64, buffer_size=2_000, batch_size=32, train_freq=4,
                        seed=0, device="cpu")
    user_model.learn(320)
    assert user_model.num_timesteps >= 320
    episodes = list(user_model.ep_info_buffer)
    assert episodes, "VecMonitor recorded no finished episode"
    assert all(np.isfinite(ep["r"]) and ep["l"] >= 1 for ep in episodes)


def test_ppo_multi_input_policy_runs_on_history_obs() -> None:
    import stable_baselines3 as sb3

    vec = make_vec_env("stationary", 4, seed=0, obs_mode="history", history_len=8)
    user_model = sb3.PPO("MultiInputPolicy", vec, n_steps=16, batch_size=32, n_epochs=1, seed=0, device="cpu")
    user_model.learn(64)
    assert user_model.num_timesteps >= 64
    action, _ = user_model.predict(vec.reset(), deterministic=True)
    assert all(vec.action_space.contains(a) for a in action)


# ------------------------------------------------------------------------------------ pickling

@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_env_pickles_and_deepcopies_mid_episode(preset: str) -> None:
    """A copy taken mid-life continues exactly as the original, across the next reset."""
    env = ShopSimEnv(preset, obs_mode="history", slate_size=2, **short_life(preset))
    env.action_space.seed(4)
    env.reset(seed=4)
    for _ in range(5):
        env.step(env.action_space.sample())
    copies = [env, pickle.loads(pickle.dumps(env)), copy.deepcopy(env)]
    for _ in range(40):
        action = env.action_space.sample()
        results = [c.step(action) for c in copies]
        first = results[0]
        for other in results[1:]:
            for a, b in zip(obs_arrays(first[0]), obs_arrays(other[0]), strict=True):
                np.testing.assert_array_equal(a, b)
            assert other[1:4] == first[1:4] and other[4] == first[4]
        if first[2] or first[3]:
            resets = [c.reset() for c in copies]
            for other in resets[1:]:
                for a, b in zip(obs_arrays(resets[0][0]), obs_arrays(other[0]), strict=True):
                    np.testing.assert_array_equal(a, b)
    made = gym.make(ENV_ID, preset=preset)
    made.reset(seed=0)
    clone = pickle.loads(pickle.dumps(made))
    action = made.action_space.sample()
    for a, b in zip(obs_arrays(made.step(action)[0]), obs_arrays(clone.step(action)[0]), strict=True):
        np.testing.assert_array_equal(a, b)
