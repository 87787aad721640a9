"""Property tests: extreme knobs never give NaN/inf or out-of-space observations; choice
probabilities are probabilities; every config mistake is one ConfigError naming the key.

Knob values are drawn from each knob's own allowed range (``SimConfig`` field metadata), with
the ends of the range weighted in, so the tests follow the config when a range changes.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from driftrec.envs import ENV_ID, ConfigError, SimConfig, preset_config
from driftrec.envs import rng as rngs
from driftrec.envs.user_model import build_user_model

FIELDS = {f.name: f for f in dataclasses.fields(SimConfig)}
HINTS = {f.name: type(f.default) for f in dataclasses.fields(SimConfig)}
N_USERS, N_STEPS = 8, 12
# derandomize: the same examples every run, so CI is reproducible (explore with a local profile)
PROPERTY_SETTINGS = settings(max_examples=40, deadline=None, derandomize=True,
                             suppress_health_check=[HealthCheck.too_slow])


def _range(name: str) -> tuple[float, float]:
    meta = FIELDS[name].metadata
    return meta["lo"], meta["hi"]


def ends_or_any(name: str) -> st.SearchStrategy[float]:
    """A value of the knob's allowed range, its two ends drawn as often as everything between."""
    lo, hi = _range(name)
    return st.one_of(st.sampled_from((lo, hi)), st.floats(lo, hi))


def ends(name: str) -> st.SearchStrategy[float]:
    """One end of the knob's allowed range (e.g. position_decay 0 and 1, a drift off or at its max)."""
    return st.sampled_from(_range(name))


EXTREME_KNOBS = st.fixed_dictionaries({
    "appeal_scale": ends_or_any("appeal_scale"),
    "quality_scale": ends_or_any("quality_scale"),
    "interest_scale": ends_or_any("interest_scale"),
    "price_sensitivity": ends_or_any("price_sensitivity"),
    "no_click_utility": ends_or_any("no_click_utility"),
    "position_decay": ends("position_decay"),
    "drift_gradual": ends("drift_gradual"),
    "gradual_reversion": ends("gradual_reversion"),
    "drift_migration": ends("drift_migration"),
    "drift_seasonal": ends("drift_seasonal"),
    "drift_bubble": ends("drift_bubble"),
    "drift_fatigue": ends("drift_fatigue"),
    "fatigue_half_life_days": ends_or_any("fatigue_half_life_days"),
    "count_decay": st.one_of(st.just(_range("count_decay")[1]), st.floats(0.99, _range("count_decay")[1])),
    "patience_mean": ends("patience_mean"),
    "choice_model": st.sampled_from(FIELDS["choice_model"].metadata["choices"]),
    "obs_mode": st.sampled_from(FIELDS["obs_mode"].metadata["choices"]),
    "action_mode": st.sampled_from(FIELDS["action_mode"].metadata["choices"]),
    "slate_size": st.integers(1, 4),
})


def _rows_in_space(space: spaces.Space, obs: Any) -> None:
    """Every user's observation lies in the single-user space and holds finite values (the
    oracle's bounds are infinite, so ``contains`` alone would accept inf)."""
    arrays = obs if isinstance(obs, dict) else {"features": obs}
    for arr in arrays.values():
        assert np.isfinite(arr).all(), "non-finite observation"
    for i in range(N_USERS):
        one = {k: v[i] for k, v in obs.items()} if isinstance(obs, dict) else obs[i]
        assert space.contains(one), f"user {i}'s observation is outside {space}"


def _check_probs(probs: np.ndarray, shown: np.ndarray, position_decay: float) -> None:
    k = shown.shape[1]
    assert probs.shape == (N_USERS, k + 1)
    assert np.isfinite(probs).all() and (probs >= 0.0).all() and (probs <= 1.0).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=0.0, atol=1e-9)
    assert (probs[:, :k][~shown] == 0.0).all(), "a duplicate position (not shown) has click probability"
    if position_decay == 0.0:
        assert (probs[:, 1:k] == 0.0).all(), "position_decay 0: only the first position is examined"


@PROPERTY_SETTINGS
@given(knobs=EXTREME_KNOBS, seed=st.integers(0, 2**32))
def test_extreme_knobs_stay_finite_in_space_with_valid_choice_probs(knobs: dict[str, Any], seed: int) -> None:
    # a small world keeps each example cheap; short lives exercise the reset path
    cfg = SimConfig.from_dict({**knobs, "n_items": 60, "n_categories": 6, "n_candidates": 8, "horizon_days": 2.0})
    user_model = build_user_model(cfg)
    state = user_model.init(rngs.user_keys(seed + np.arange(N_USERS)), np.zeros(N_USERS, dtype=np.int64))
    rng = np.random.default_rng(seed)
    n_actions = user_model.m if user_model.m else cfg.n_items
    # overflow and invalid operations (NaN) are bugs even where the result is later clipped
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        for _ in range(N_STEPS):
            _rows_in_space(user_model.observation_space, user_model.observe(state))
            action = rng.integers(0, n_actions, size=(N_USERS, cfg.slate_size))
            action[: N_USERS // 2, -1] = action[: N_USERS // 2, 0]  # half the slates repeat an item
            items = user_model.slate_items(state, action)
            shown = np.ones(items.shape, dtype=bool)
            for k in range(1, cfg.slate_size):
                shown[:, k] = (items[:, :k] != items[:, k:k + 1]).all(axis=1)
            probs = user_model.choice_probs(state, items)
            _check_probs(probs, shown, cfg.position_decay)
            state, out = user_model.step(state, action if cfg.slate_size > 1 else action[:, 0], inplace=True)
            assert np.isfinite(out.reward).all(), "non-finite reward"
            # the step samples from these probabilities: it never picks an outcome they rule out
            chosen = np.where(out.click_pos >= 0, out.click_pos, cfg.slate_size)
            assert (probs[np.arange(N_USERS), chosen] > 0.0).all(), "step chose an outcome of probability 0"
            user_model.reset_where(state, out.terminated | out.truncated)
        _rows_in_space(user_model.observation_space, user_model.observe(state))


# ------------------------------------------------------------------------------------ config errors

def _assert_names(err: pytest.ExceptionInfo[ConfigError], key: str) -> None:
    message = str(err.value)
    assert f"'{key}'" in message, message
    assert "\n" not in message, "the message must be one line"


def _wrong_type(name: str) -> Any:
    kind = HINTS[name]
    if kind is bool:
        return 3
    if kind is str:
        return 3
    if kind is int:
        return 2.5  # an int knob never silently truncates a fraction
    return "lots"


@pytest.mark.parametrize("key", list(FIELDS))
def test_wrong_type_is_rejected_by_name(key: str) -> None:
    with pytest.raises(ConfigError) as err:
        SimConfig.from_dict({key: _wrong_type(key)})
    _assert_names(err, key)


NUMERIC = [name for name, f in FIELDS.items() if f.metadata["lo"] is not None]
CHOICES = [name for name, f in FIELDS.items() if f.metadata["choices"]]


@pytest.mark.parametrize("key", NUMERIC)
def test_out_of_range_and_nan_are_rejected_by_name(key: str) -> None:
    lo, hi = _range(key)
    bad: list[Any] = [lo - max(1, abs(lo)), hi + max(1, abs(hi))]
    if HINTS[key] is float:
        bad.append(math.nan)
    for value in bad:
        with pytest.raises(ConfigError) as err:
            SimConfig.from_dict({key: value})
        _assert_names(err, key)


@pytest.mark.parametrize("key", CHOICES)
def test_bad_choice_is_rejected_by_name(key: str) -> None:
    with pytest.raises(ConfigError) as err:
        SimConfig.from_dict({key: "no-such-choice"})
    _assert_names(err, key)
    for choice in FIELDS[key].metadata["choices"]:
        assert choice in str(err.value), "the message lists the allowed choices"


def test_unknown_key_is_rejected_by_name_with_a_suggestion() -> None:
    with pytest.raises(ConfigError) as err:
        SimConfig.from_dict({"slate_sise": 2})
    _assert_names(err, "slate_sise")
    assert "slate_size" in str(err.value)
    for make in (lambda: preset_config("gradual", {"drift_gradul": 0.1}),
                 lambda: gym.make(ENV_ID, preset="gradual", drift_gradul=0.1)):
        with pytest.raises(ConfigError) as err:
            make()
        _assert_names(err, "drift_gradul")
    with pytest.raises(ConfigError) as err:
        preset_config("no-such-preset")
    _assert_names(err, "no-such-preset")


@settings(max_examples=60, deadline=None, derandomize=True)
@given(data=st.data())
def test_numbers_are_accepted_exactly_inside_their_range(data: st.DataObject) -> None:
    key = data.draw(st.sampled_from(NUMERIC))
    lo, hi = _range(key)
    if HINTS[key] is int:
        inside, outside = st.integers(int(lo), int(hi)), st.one_of(st.integers(max_value=int(lo) - 1),
                                                                    st.integers(min_value=int(hi) + 1))
    else:
        inside = st.floats(lo, hi)
        outside = st.one_of(st.floats(max_value=lo, exclude_max=True), st.floats(min_value=hi, exclude_min=True))
    value = data.draw(inside)
    assert getattr(SimConfig.from_dict({key: value}), key) == value
    with pytest.raises(ConfigError) as err:
        SimConfig.from_dict({key: data.draw(outside)})
    _assert_names(err, key)


@pytest.mark.parametrize("choice_model", ["mnl", "cascade"])
def test_a_hidden_position_of_huge_utility_changes_nothing(choice_model: str) -> None:
    """Regression: with position_decay 0 only position 0 is examined. A far more attractive item
    at position 1 once set the MNL's scale, underflowing every real weight to 0 / 0 (NaN
    probabilities, a ZeroDivisionError or a user who never clicks in the step)."""
    cfg = SimConfig.from_dict({"choice_model": choice_model, "position_decay": 0.0, "slate_size": 2,
                               "interest_scale": 20.0, "n_items": 60, "n_categories": 6, "search_prob": 0.0})
    user_model = build_user_model(cfg)
    topic = user_model.world.topic
    cos = topic @ topic.T
    first, second = np.argwhere((cos > 0.2) & (cos < 0.6))[0]  # related items, far apart in utility
    state = user_model.init(rngs.user_keys(np.arange(N_USERS)), np.zeros(N_USERS, dtype=np.int64))
    state.interest[:] = 100.0 * topic[second]  # util(second) - util(first) > 800 logits: exp underflows
    items = np.tile([first, second], (N_USERS, 1))
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        probs = user_model.choice_probs(state, items)
        _, out = user_model.step(state, items)
    np.testing.assert_allclose(probs, np.tile([1.0, 0.0, 0.0], (N_USERS, 1)), rtol=0.0, atol=1e-12)
    np.testing.assert_array_equal(out.click_pos, 0)  # position 0 is all but certain to be clicked


def _other_value(key: str) -> Any:
    """An allowed value of ``key`` other than its default."""
    field, default = FIELDS[key], FIELDS[key].default
    if field.metadata["choices"]:
        return next(c for c in field.metadata["choices"] if c != default)
    if HINTS[key] is bool:
        return not default
    lo, hi = _range(key)
    value = default + 1 if default + 1 <= hi else default - 1
    return int(value) if HINTS[key] is int else max(lo, min(hi, float(value)))


@pytest.mark.parametrize("preset", ["default", "recsim-ie"])
def test_a_key_the_model_does_not_read_is_refused_by_name(preset: str) -> None:
    """Each user model declares the keys it reads (READS); a key it would silently ignore, set away
    from its default, is one ConfigError naming the key and the model, however the config is built."""
    user_model = build_user_model(preset_config(preset))
    unread = [key for key in FIELDS if key not in user_model.READS]
    assert unread, f"{preset}: every key is read"
    for key in unread:
        for make in (lambda key=key: build_user_model(preset_config(preset, {key: _other_value(key)})),
                     lambda key=key: gym.make(ENV_ID, preset=preset, **{key: _other_value(key)})):
            with pytest.raises(ConfigError) as err:
                make()
            _assert_names(err, key)
            assert f"model '{user_model.cfg.model}'" in str(err.value)
    assert "recsim_budget" in unread if preset == "default" else "drift_bubble" in unread
