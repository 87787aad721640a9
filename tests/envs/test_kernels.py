"""The compiled kernels' plumbing: random streams equal to envs/rng.py, every knob in the knob
record, and arrays bound to kernel parameters by name (so none can be passed in the wrong place)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from numba import njit
from scipy import stats

from driftrec.envs import rng as rngs
from driftrec.envs.binding import Call, pack_params
from driftrec.envs.config import SimConfig
from driftrec.envs.kernels import _base, _normal_pair, stream_uniforms
from driftrec.envs.shop import ShopState
from driftrec.envs.state import StepOutput
from driftrec.envs.user_model import user_model_for


@pytest.mark.parametrize("stream", [rngs.STREAM_STEP, rngs.STREAM_INIT, rngs.STREAM_SESSION, rngs.STREAM_CANDIDATES])
def test_compiled_streams_equal_rng_bit_for_bit(stream: int) -> None:
    """Every column of every (key, counter) is the same float64, bit for bit, compiled or numpy:
    the docstring's promise that a user's draws do not depend on which code draws them."""
    rng = np.random.default_rng(0)
    keys = rngs.user_keys(rng.integers(0, 2**62, size=500))
    counters = rng.integers(0, 2**40, size=500)
    counters[:5] = [0, 1, 2, 2**40 - 1, 63]
    compiled = np.empty((500, 40))
    stream_uniforms(keys, stream, counters, compiled)
    reference = rngs.uniforms(keys, stream, counters, 40)
    assert compiled.dtype == reference.dtype == np.float64
    assert np.array_equal(compiled.view(np.uint64), reference.view(np.uint64))
    assert 0.0 <= compiled.min() and compiled.max() < 1.0


def test_compiled_life_keys_equal_rng() -> None:
    """A life's key (and the user_id derived from it) equals rng.episode_key of its slot and episode."""
    user_model = user_model_for("default")
    slots = rngs.user_keys(np.arange(50))
    episodes = np.arange(50) % 4
    state = user_model.init(slots, episodes)
    np.testing.assert_array_equal(state.key, rngs.episode_key(slots, episodes))
    np.testing.assert_array_equal(state.user_id, (state.key >> np.uint64(1)).astype(np.int64))


def test_knob_record_holds_every_simconfig_field() -> None:
    """pack_params carries every SimConfig knob under its own name: numbers as they are, a choice
    as its index among the field's choices."""
    cfg = SimConfig.from_dict({"choice_model": "cascade", "drift_bubble": 0.25, "slate_size": 3,
                               "events_visible": False, "obs_mode": "history"})
    record = pack_params(cfg)[0]
    for f in dataclasses.fields(SimConfig):
        value = getattr(cfg, f.name)
        want = f.metadata["choices"].index(value) if f.metadata.get("choices") else value
        assert record[f.name] == want, f.name
    assert record["choice_model"] == 1 and record["slate_size"] == 3 and not record["events_visible"]


@dataclasses.dataclass
class _Two:
    first: np.ndarray
    second: np.ndarray


@dataclasses.dataclass
class _Out:
    result: np.ndarray


@njit
def _swapped(scale, second, first, out_result):  # noqa: ANN001
    """Parameters in another order than the dataclass fields: binding is by name, not position."""
    for i in range(first.shape[0]):
        out_result[i] = scale * first[i] - second[i]


def test_call_binds_arrays_by_parameter_name_whatever_their_order() -> None:
    two = _Two(first=np.array([10.0, 20.0]), second=np.array([1.0, 2.0]))
    out = _Out(np.zeros(2))
    Call(_swapped, 0, {"scale": 2.0}, ("", _Two), ("out_", _Out))(two, out)
    np.testing.assert_array_equal(out.result, [19.0, 38.0])  # 2 * first - second, never 2 * second - first


def test_call_refuses_a_parameter_it_cannot_bind() -> None:
    @njit
    def typo(scale, frist, out_result):  # noqa: ANN001, ANN202
        out_result[0] = frist[0]

    with pytest.raises(TypeError, match="parameter 'frist'"):
        Call(typo, 0, {"scale": 1.0}, ("", _Two), ("out_", _Out))
    with pytest.raises(TypeError, match="two sources"):
        Call(_swapped, 0, {"scale": 1.0, "first": np.zeros(2)}, ("", _Two), ("out_", _Out))


def test_the_step_kernels_bind_every_array_from_its_field() -> None:
    """Each ShopSim kernel takes its state and output arrays by field name: the bound names are
    exactly the kernel's parameters after the model-level ones, and each bound array is the
    state's (the same object), not a copy or a neighbour."""
    user_model = user_model_for("default", {"action_mode": "candidates"})
    state = user_model.init(rngs.user_keys(np.arange(3)), np.zeros(3, dtype=np.int64))
    state_fields = {f.name for f in dataclasses.fields(ShopState)}
    out_fields = {f.name for f in dataclasses.fields(StepOutput)}
    for call in (user_model._start, user_model._candidates, user_model._step, user_model._observe):
        params = list(call.kernel.py_func.__code__.co_varnames[:call.kernel.py_func.__code__.co_argcount])
        bound_state = call.bound[0]
        assert set(bound_state) <= state_fields
        tail = params[len(params) - sum(len(b) for b in call.bound):]
        assert tail[:len(bound_state)] == bound_state
        for name, array in zip(bound_state, call.getters[0](state), strict=True):
            assert array is getattr(state, name)
        if len(call.bound) > 1:
            assert {"out_" + f for f in call.bound[1]} <= {"out_" + f for f in out_fields}
            assert tail[len(bound_state):] == ["out_" + f for f in call.bound[1]]


@njit
def _normals(keys, out):  # noqa: ANN001, ANN202
    for i in range(keys.shape[0]):
        b = _base(keys[i], 3, 7)
        for pair in range(out.shape[1] // 2):
            out[i, 2 * pair], out[i, 2 * pair + 1] = _normal_pair(b, pair)


def test_compiled_normal_pairs_are_independent_standard_normals() -> None:
    """Marsaglia's polar pairs (the OU noise and each new user's draws): each coordinate is N(0, 1)
    (Kolmogorov-Smirnov), the two of a pair and neighbouring pairs are uncorrelated."""
    keys = rngs.user_keys(np.arange(50_000))
    z = np.empty((50_000, 4))
    _normals(keys, z)
    for j in range(4):
        assert stats.kstest(z[:, j], "norm").pvalue > 1e-4, f"column {j} is not N(0, 1)"
    corr = np.corrcoef(z.T)[np.triu_indices(4, 1)]
    assert np.all(np.abs(corr) < 4.5 / np.sqrt(len(z))), f"correlations {corr.round(4)}"
