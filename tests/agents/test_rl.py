"""SB3 agents: the builder, learning on a small catalog, save/load, the env spec, the extractors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3 import DQN
from stable_baselines3.common.preprocessing import preprocess_obs
from stable_baselines3.common.vec_env import VecMonitor
from torch import nn

from driftrec.agents.evaluate import EvalResult, evaluate_policy, paired_difference
from driftrec.agents.extractors import AttentionExtractor, GRUExtractor
from driftrec.agents.registry import make_policy
from driftrec.agents.rl import (
    ALGORITHMS,
    EnvSpecError,
    HeldOutUsers,
    SB3Policy,
    build_agent,
    check_env_spec,
    env_spec,
    hyperparam_keys,
    load_agent,
    load_hyperparams,
    parse_policy_kwargs,
    save_agent,
    space_text,
    validation_seeds,
)
from driftrec.envs.config import ConfigError, SimConfig
from driftrec.envs.presets import PRESETS, preset_config
from driftrec.envs.rollout import eval_seeds, train_seeds
from driftrec.envs.user_model import build_user_model
from driftrec.envs.vector import ShopSimVecEnv

# A small stationary shop: 20 items in 4 categories, one-day lives. Two items are far better than
# the rest for most users, so a learner that finds one gets most of oracle-greedy's reward, and
# random gets a sixth of it. At the default appeal spread the items differ too little for that
# (oracle-greedy gets 3.2x random's reward, the best fixed item 2.6x), hence appeal_scale 3; satiety
# is off so that the best item stays the best all day (with it, oracle-greedy moves on after clicks).
SMALL = {"n_items": 20, "n_categories": 4, "horizon_days": 1.0, "appeal_scale": 3.0, "satiation_click": 0.0,
         "satiation_purchase": 0.0}
EVAL_USERS = 300
PPO_FAST = {"n_steps": 32, "batch_size": 256, "n_epochs": 4, "learning_rate": 1e-3, "gamma": 0.9,
            "ent_coef": 0.01, "policy_kwargs": {"net_arch": [64, 64]}}
DQN_FAST = {"learning_rate": 1e-3, "buffer_size": 50_000, "learning_starts": 1000, "batch_size": 128, "train_freq": 1,
            "gradient_steps": 1, "target_update_interval": 1000, "exploration_fraction": 0.3, "gamma": 0.5,
            "policy_kwargs": {"net_arch": [64, 64]}}
TINY = {"n_items": 20, "n_categories": 4, "horizon_days": 0.25}


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def small_env(n_users: int, seed: int = 0, preset: str = "stationary", **overrides: object) -> VecMonitor:
    return VecMonitor(ShopSimVecEnv(n_users, preset=preset, seed=seed, **{**SMALL, **overrides}))


@pytest.fixture(scope="module")
def references() -> dict[str, EvalResult]:
    """Random and oracle-greedy on the evaluation users of the small catalog (seed 0)."""
    cfg = preset_config("stationary", SMALL)
    user_model = build_user_model(cfg)
    return {name: evaluate_policy(make_policy(name, user_model, EVAL_USERS, 0), cfg, EVAL_USERS, 0,
                                  user_model=user_model)
            for name in ("random", "oracle-greedy")}


def assert_learned(result: EvalResult, references: dict[str, EvalResult], fraction: float) -> None:
    oracle, rand = references["oracle-greedy"].summary["reward"], references["random"].summary["reward"]
    reward = result.summary["reward"]
    assert reward >= fraction * oracle, f"reward per user {reward:.2f} < {fraction} x oracle-greedy's {oracle:.2f}"
    diff, low, high = paired_difference(result, references["random"])
    # beats random on the same users by a margin outside the noise: the paired 95% CI lies above 0
    assert low > 0, f"vs random: {diff:.2f} [{low:.2f}, {high:.2f}]"
    assert reward >= 3 * rand, f"reward per user {reward:.2f} < 3 x random's {rand:.2f}"


# ------------------------------------------------------------------------------------- learning
@pytest.mark.slow
def test_ppo_learns_the_small_catalog(references: dict[str, EvalResult]) -> None:
    """20k user-steps (~2 s): PPO gets >= 80% of oracle-greedy's reward per user (measured 91%)."""
    agent = build_agent("ppo", small_env(32), PPO_FAST, seed=0)
    agent.learn(20_000)
    cfg = preset_config("stationary", SMALL)
    assert_learned(evaluate_policy(SB3Policy(agent), cfg, EVAL_USERS, 0), references, 0.8)


@pytest.mark.slow
def test_dqn_learns_the_small_catalog(references: dict[str, EvalResult]) -> None:
    """30k user-steps (~3 s): DQN gets >= 40% of oracle-greedy's reward per user (measured 87-91%
    over seeds 0-2; DQN is the less stable learner on this task)."""
    agent = build_agent("dqn", small_env(32), DQN_FAST, seed=0)
    agent.learn(30_000)
    cfg = preset_config("stationary", SMALL)
    assert_learned(evaluate_policy(SB3Policy(agent), cfg, EVAL_USERS, 0), references, 0.4)


def test_two_seeded_runs_match() -> None:
    """SB3 on the CPU with one thread: the same seed gives the same policy."""
    actions = []
    for _ in range(2):
        agent = build_agent("ppo", small_env(8, **TINY), {**PPO_FAST, "batch_size": 64}, seed=3)
        agent.learn(512)
        obs = small_env(16, seed=99, **TINY).reset()
        actions.append(SB3Policy(agent).act(obs)[0])
    np.testing.assert_array_equal(actions[0], actions[1])


# ------------------------------------------------------------------------------------- builder
@pytest.mark.parametrize("algo", list(ALGORITHMS))
def test_every_algorithm_builds_and_steps(algo: str) -> None:
    hp = {"n_steps": 8, "batch_size": 64} if "ppo" in algo else {"n_steps": 8} if algo == "a2c" else \
        {"learning_starts": 32, "batch_size": 32, "buffer_size": 1000}
    agent = build_agent(algo, small_env(8, **TINY), hp, seed=0)
    agent.learn(128)
    assert agent.num_timesteps >= 128
    policy = SB3Policy(agent)
    assert policy.uses_mask == (algo == "maskable-ppo")
    obs = small_env(5, **TINY).reset()
    mask = np.ones((5, 20), dtype=bool) if policy.uses_mask else None
    actions, propensities = policy.act(obs, mask)
    assert actions.shape == (5,) and actions.dtype == np.int64 and ((0 <= actions) & (actions < 20)).all()
    assert propensities is None


def test_builder_rejects_an_unknown_hyperparameter_naming_it() -> None:
    with pytest.raises(ConfigError, match=r"^unknown hyperparameter 'gama' for ppo; did you mean 'gamma'\?$"):
        build_agent("ppo", small_env(2), {"gama": 0.9}, seed=0)
    with pytest.raises(ConfigError, match="^unknown hyperparameter 'n_epochs' for dqn"):
        build_agent("dqn", small_env(2), {"n_epochs": 3}, seed=0)
    with pytest.raises(ConfigError, match="'frame_stack' is not supported"):
        build_agent("ppo", small_env(2), {"frame_stack": 4}, seed=0)
    with pytest.raises(ConfigError, match="unknown policy_kwargs key 'net_arc' for ppo MlpPolicy; did you mean"):
        build_agent("ppo", small_env(2), {"policy_kwargs": {"net_arc": [8]}}, seed=0)
    with pytest.raises(ConfigError, match="unknown algorithm 'sac'"):
        build_agent("sac", small_env(2), {}, seed=0)


def test_builder_rejects_bad_values_in_one_line() -> None:
    with pytest.raises(ConfigError, match="hyperparameter 'gamma' for ppo must be a number, got 'high'"):
        build_agent("ppo", small_env(2), {"gamma": "high"}, seed=0)
    with pytest.raises(ConfigError, match="'normalize' for ppo is not supported"):
        build_agent("ppo", small_env(2), {"normalize": True}, seed=0)
    with pytest.raises(ConfigError, match="'n_envs' for ppo must be a positive integer"):
        build_agent("ppo", small_env(2), {"n_envs": 0}, seed=0)
    with pytest.raises(ConfigError, match="'policy' is MultiInputPolicy but Box"):
        build_agent("ppo", small_env(2), {"policy": "MultiInputPolicy"}, seed=0)
    with pytest.raises(ConfigError, match="features_extractor: gru' reads history observations"):
        build_agent("ppo", small_env(2), {"policy_kwargs": {"features_extractor": "gru"}}, seed=0)


@pytest.mark.parametrize("algo", ["dqn", "qrdqn"])
def test_value_based_agents_refuse_a_slate_suggesting_ppo(algo: str) -> None:
    message = rf"^{algo} needs a single-item action .*MultiDiscrete\(\[20, 20, 20\]\).*use ppo"
    with pytest.raises(ConfigError, match=message):
        build_agent(algo, small_env(2, slate_size=3), {}, seed=0)


def test_double_dqn_bootstraps_from_the_online_networks_choice(tmp_path: Path) -> None:
    """double_q: the target network values the next item the online network picks, not its own max;
    the flag survives save / load, and without it the algorithm is SB3's DQN."""
    hp = {"learning_starts": 32, "batch_size": 32, "buffer_size": 1000, "double_q": True}
    agent = build_agent("dqn", small_env(8, **TINY), hp, seed=0)
    agent.learn(128)  # trains through the double-Q update
    with torch.no_grad():
        for p in agent.q_net_target.parameters():  # the two networks now disagree
            p.add_(0.5 * torch.randn_like(p))
        obs = agent.policy.obs_to_tensor(small_env(64, seed=5, **TINY).reset())[0]
        online, target = agent.q_net(obs), agent.q_net_target(obs)
        expected = target.gather(1, online.argmax(1, keepdim=True))
        assert torch.allclose(agent.next_values(obs), expected)
        assert (expected < target.max(1, keepdim=True).values).any()  # not DQN's max over the target
    cfg = preset_config("stationary", TINY)
    save_agent(agent, tmp_path / "run", {"algo": "dqn", "preset": "stationary", "overrides": TINY,
                                         "config": cfg.to_dict(), "env": env_spec(cfg)})
    assert load_agent(tmp_path / "run")[0].double_q is True


def test_dqn_without_its_options_is_sb3s_dqn() -> None:
    """double_q false and huber_delta 1 (the defaults): the same weights as SB3's own DQN, seed for seed."""
    hp = {"learning_starts": 32, "batch_size": 32, "buffer_size": 1000, "policy_kwargs": {"net_arch": [16]}}
    ours = build_agent("dqn", small_env(8, **TINY), hp, seed=0)
    assert not ours.double_q and ours.huber_delta == 1.0
    ours.learn(256)  # before the next model is built: exploration draws from numpy's global RNG, seeded there
    theirs = DQN("MlpPolicy", small_env(8, **TINY), learning_starts=32, batch_size=32, buffer_size=1000,
                 policy_kwargs={"net_arch": [16]}, seed=0, device="cpu")
    theirs.learn(256)
    for a, b in zip(ours.q_net.parameters(), theirs.q_net.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    assert (ours.q_net.q_net[0].weight != build_agent("dqn", small_env(8, **TINY), hp, seed=0)
            .q_net.q_net[0].weight).any()  # it trained
    with pytest.raises(ConfigError, match="huber_delta must be positive"):
        build_agent("dqn", small_env(2, **TINY), {"huber_delta": 0}, seed=0)


def test_ppo_trains_on_a_slate() -> None:
    agent = build_agent("ppo", small_env(4, slate_size=3, **TINY), {"n_steps": 16, "batch_size": 64}, seed=0)
    agent.learn(64)
    actions, _ = SB3Policy(agent).act(small_env(6, slate_size=3, **TINY).reset())
    assert actions.shape == (6, 3)


def test_policy_kwargs_string_form_is_parsed_not_evaluated() -> None:
    text = "dict(net_arch=dict(pi=[32, 32], vf=[16]), activation_fn=nn.Tanh, ortho_init=False, log_std_init=-2)"
    assert parse_policy_kwargs(text) == {"net_arch": {"pi": [32, 32], "vf": [16]}, "activation_fn": "nn.Tanh",
                                         "ortho_init": False, "log_std_init": -2}
    agent = build_agent("ppo", small_env(2), {"policy_kwargs": text}, seed=0)
    assert agent.policy.activation_fn is nn.Tanh
    assert [m.out_features for m in agent.policy.mlp_extractor.policy_net if isinstance(m, nn.Linear)] == [32, 32]
    assert build_agent("ppo", small_env(2), {"policy_kwargs": {"activation_fn": "relu"}}, seed=0) \
        .policy.activation_fn is nn.ReLU
    for bad in ("__import__('os').system('true')", "dict(a=open('x'))", "[1, 2]", "dict(a="):
        with pytest.raises(ConfigError, match="policy_kwargs"):
            parse_policy_kwargs(bad)
    with pytest.raises(ConfigError, match="unknown Module 'nn.Nope'"):
        build_agent("ppo", small_env(2), {"policy_kwargs": "dict(activation_fn=nn.Nope)"}, seed=0)


def test_linear_schedule_and_numbers_as_strings() -> None:
    agent = build_agent("ppo", small_env(2), {"learning_rate": "lin_1e-3", "clip_range": "lin_0.2",
                                              "gamma": "0.9", "n_steps": 16.0, "batch_size": 32}, seed=0)
    assert agent.lr_schedule(1.0) == pytest.approx(1e-3) and agent.lr_schedule(0.5) == pytest.approx(5e-4)
    assert agent.clip_range(0.25) == pytest.approx(0.05)
    assert agent.gamma == 0.9 and agent.n_steps == 16 and isinstance(agent.n_steps, int)
    with pytest.raises(ConfigError, match="bad schedule 'lin_x'"):
        build_agent("ppo", small_env(2), {"learning_rate": "lin_x"}, seed=0)


def test_hyperparameter_names_never_collide_with_simconfig_keys() -> None:
    """`driftrec train --set KEY=VALUE` routes a key to the SimConfig or the hyperparameters by name."""
    sim = {f.name for f in dataclasses.fields(SimConfig)}
    for algo in ALGORITHMS:
        assert not sim & hyperparam_keys(algo), algo


# ------------------------------------------------------------------------------------- YAML
@pytest.mark.parametrize("algo", list(ALGORITHMS))
def test_packaged_hyperparameters_load_for_every_preset(algo: str) -> None:
    for preset in PRESETS:
        hp = load_hyperparams(algo, preset)
        assert {"n_timesteps", "n_envs", "policy", "policy_kwargs"} <= set(hp), (algo, preset)
    # the preset entry is laid over defaults: stationary changes the budget, keeps the rest
    assert load_hyperparams("ppo", "stationary")["n_timesteps"] != load_hyperparams("ppo", "gradual")["n_timesteps"]
    assert load_hyperparams("ppo", "stationary")["gamma"] == load_hyperparams("ppo", "gradual")["gamma"]


def test_user_hyperparameter_files(tmp_path: Path) -> None:
    flat = tmp_path / "best.yml"  # what a tuning run exports
    flat.write_text("learning_rate: 3e-4\nn_steps: 128\n")
    assert load_hyperparams("ppo", "default", flat) == {"learning_rate": "3e-4", "n_steps": 128}
    per_preset = tmp_path / "zoo.yml"
    per_preset.write_text("defaults: {gamma: 0.9, n_steps: 8}\nbubble: {gamma: 0.99}\n")
    assert load_hyperparams("ppo", "bubble", per_preset) == {"gamma": 0.99, "n_steps": 8}
    assert load_hyperparams("ppo", "default", per_preset) == {"gamma": 0.9, "n_steps": 8}
    bad_key = tmp_path / "bad.yml"
    bad_key.write_text("default: {gamma: 0.9, clip: 0.1}\n")
    with pytest.raises(ConfigError, match=r"unknown hyperparameter 'clip' for ppo \(preset 'default'\) in '.*bad.yml'"):
        load_hyperparams("ppo", "default", bad_key)
    bad_preset = tmp_path / "bad_preset.yml"
    bad_preset.write_text("defaults: {}\nstationry: {gamma: 0.9}\n")
    with pytest.raises(ConfigError, match="unknown preset 'stationry'"):
        load_hyperparams("ppo", "default", bad_preset)
    only_other = tmp_path / "other.yml"
    only_other.write_text("bubble: {gamma: 0.9}\n")
    with pytest.raises(ConfigError, match="no entry for preset 'default' and no 'defaults'"):
        load_hyperparams("ppo", "default", only_other)
    broken = tmp_path / "broken.yml"
    broken.write_text("a: [1,\n")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_hyperparams("ppo", "default", broken)
    with pytest.raises(ConfigError, match="does not exist"):
        load_hyperparams("ppo", "default", tmp_path / "missing.yml")


# ------------------------------------------------------------------------------------- save, load, spec
@pytest.mark.parametrize("algo", ["ppo", "dqn"])
def test_save_and_load_give_identical_actions(algo: str, tmp_path: Path) -> None:
    hp = {**PPO_FAST, "batch_size": 64} if algo == "ppo" else {**DQN_FAST, "learning_starts": 64}
    agent = build_agent(algo, small_env(8, **TINY), hp, seed=0)
    agent.learn(512)
    cfg = preset_config("stationary", TINY)
    save_agent(agent, tmp_path / "run", {"algo": algo, "preset": "stationary", "overrides": TINY,
                                         "config": cfg.to_dict(), "env": env_spec(cfg)})
    loaded, spec = load_agent(tmp_path / "run")
    assert type(loaded) is type(agent) and spec["algo"] == algo
    assert not list((tmp_path / "run").glob("*.partial"))
    obs = small_env(64, seed=123, **TINY).reset()
    np.testing.assert_array_equal(SB3Policy(agent).act(obs)[0], SB3Policy(loaded).act(obs)[0])


def test_env_spec_mismatch_names_what_differs(tmp_path: Path) -> None:
    cfg = preset_config("stationary", TINY)
    spec = {"algo": "ppo", "preset": "stationary", "config": cfg.to_dict(), "env": env_spec(cfg)}
    assert check_env_spec(spec, preset_config("gradual", TINY)) == []  # other drift, same spaces and catalog
    with pytest.raises(EnvSpecError, match=r"actions Discrete\(20\) vs Discrete\(30\)\): n_items 20 vs 30$"):
        check_env_spec(spec, preset_config("stationary", {**TINY, "n_items": 30}))
    with pytest.raises(EnvSpecError, match=r"observations Box\(64,\) .* vs Box\(72,\) .*: n_categories 4 vs 5$"):
        check_env_spec(spec, preset_config("stationary", {**TINY, "n_categories": 5}))
    with pytest.raises(EnvSpecError, match="obs_mode 'features' vs 'history'"):
        check_env_spec(spec, preset_config("stationary", {**TINY, "obs_mode": "history"}))
    # the loaded model's own spaces are compared too
    agent = build_agent("ppo", small_env(2, **TINY), {"n_steps": 8, "batch_size": 16}, seed=0)
    with pytest.raises(EnvSpecError, match="slate_size 1 vs 2"):
        check_env_spec(spec, preset_config("stationary", {**TINY, "slate_size": 2}), agent)
    notes = check_env_spec(spec, preset_config("stationary", {**TINY, "world_seed": 7}), agent)
    assert notes == ["the catalog differs from training's (world_seed): item ids name different items"]


def test_space_text_is_short_and_exact() -> None:
    assert space_text(spaces.Discrete(20)) == "Discrete(20)"
    assert space_text(spaces.MultiDiscrete([10, 10])) == "MultiDiscrete([10, 10])"
    assert space_text(spaces.MultiDiscrete([7] * 20)) == "MultiDiscrete([7] * 20)"
    assert space_text(spaces.Box(-1, 1, (3,), np.float32)) == "Box(3,) float32 in [-1, 1]"


# ------------------------------------------------------------------------------------- users
def test_validation_users_are_the_same_at_every_reset_and_never_train_or_eval_users() -> None:
    env = HeldOutUsers(ShopSimVecEnv(16, preset="stationary", **TINY), int(validation_seeds(0, 1)[0]))
    first = env.reset()
    for _ in range(5):
        env.step(np.zeros(16, dtype=np.int64))
    np.testing.assert_array_equal(env.reset(), first)
    n = 10**6  # users per role in a run; the seed ranges of the roles must not overlap
    ranges = sorted((int(s[0]), int(s[-1])) for s in (train_seeds(0, n), eval_seeds(0, n), validation_seeds(0, n)))
    assert all(hi < lo for (_, hi), (lo, _) in zip(ranges, ranges[1:], strict=False))


# ------------------------------------------------------------------------------------- extractors
@pytest.mark.parametrize("cls", [GRUExtractor, AttentionExtractor])
def test_extractors_give_the_declared_dim_and_finite_output_with_empty_history(cls: type) -> None:
    user_model = build_user_model(preset_config("stationary", {**TINY, "obs_mode": "history", "history_len": 6}))
    space = user_model.observation_space
    extractor = cls(space, features_dim=24)
    assert extractor.features_dim == 24
    env = ShopSimVecEnv(5, preset="stationary", seed=0, **{**TINY, "obs_mode": "history", "history_len": 6})
    obs = env.reset()
    assert (obs["behaviours"] == 0).all()  # a new user has no events yet: all padding
    for _ in range(8):
        obs, *_ = env.step(np.arange(5))
    assert (obs["behaviours"] > 0).any()
    tensors = {k: torch.as_tensor(v) for k, v in obs.items()}
    out = extractor(preprocess_obs(tensors, space))
    assert out.shape == (5, 24) and torch.isfinite(out).all()
    empty = {k: torch.as_tensor(v) for k, v in env.reset().items()}
    assert torch.isfinite(extractor(preprocess_obs(empty, space))).all()
    with pytest.raises(ValueError, match="set obs_mode=history"):
        cls(spaces.Box(0, 1, (4,)), features_dim=8)


@pytest.mark.parametrize("name", ["gru", "attention"])
def test_ppo_learns_a_few_steps_with_a_sequence_extractor(name: str) -> None:
    env = small_env(4, obs_mode="history", history_len=8, **TINY)
    hp = {"n_steps": 16, "batch_size": 32, "n_epochs": 2,
          "policy_kwargs": {"features_extractor": name, "features_extractor_kwargs": {"features_dim": 32}}}
    agent = build_agent("ppo", env, hp, seed=0)
    assert type(agent.policy.features_extractor) is {"gru": GRUExtractor, "attention": AttentionExtractor}[name]
    before = [p.detach().clone() for p in agent.policy.features_extractor.parameters()]
    agent.learn(128)
    after = list(agent.policy.features_extractor.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))  # the extractor trained
    actions, _ = SB3Policy(agent).act(small_env(3, obs_mode="history", history_len=8, **TINY).reset())
    assert actions.shape == (3,)
    # history observations default to the GRU extractor
    default = build_agent("ppo", env, {"n_steps": 16, "batch_size": 32}, seed=0)
    assert isinstance(default.policy.features_extractor, GRUExtractor)
