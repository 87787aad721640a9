"""Policies from user modules (``module.path:factory``): resolution, the factory's inputs, family and cost."""

from __future__ import annotations

import importlib
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest

from driftrec.agents import plugins
from driftrec.agents.policies import OracleGreedyPolicy, RandomPolicy
from driftrec.envs.config import ConfigError
from driftrec.envs.user_model import user_model_for

PLUG = '''
from driftrec.agents.policies import OracleGreedyPolicy, RandomPolicy

NOT_CALLABLE = 3

def make(user_model, n_users, seed):
    return RandomPolicy(user_model.action_space, n_users, seed)

def with_logs(user_model, n_users, seed, *, logs, logs_path=None):
    policy = RandomPolicy(user_model.action_space, n_users, seed)
    policy.train_info = {"rows": len(logs), "path": str(logs_path)}
    return policy

def kwargs_only(user_model, n_users, seed, **options):
    assert not options
    return make(user_model, n_users, seed)

def two_args(user_model, n_users):
    return make(user_model, n_users, 0)

def needs_more(user_model, n_users, seed, budget):
    return make(user_model, n_users, seed)

def returns_dict(user_model, n_users, seed):
    return {"not": "a policy"}

def raises(user_model, n_users, seed):
    raise RuntimeError("out of coffee")

INFO = None

def with_info(user_model, n_users, seed):
    policy = make(user_model, n_users, seed)
    policy.train_info = INFO
    return policy

class Oracle(OracleGreedyPolicy):
    def __init__(self, user_model, n_users, seed):
        super().__init__(user_model)

class Claims(RandomPolicy):
    family = "rl"
    def __init__(self, user_model, n_users, seed):
        super().__init__(user_model.action_space, n_users, seed)
'''


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str, str], None]]:
    """``write(name, source)``: a module ``name`` importable from ``tmp_path``, forgotten after the test."""
    names: list[str] = []
    monkeypatch.syspath_prepend(str(tmp_path))

    def write(name: str, source: str) -> None:
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        names.append(name)

    yield write
    for name in names:
        sys.modules.pop(name, None)


@pytest.fixture
def plug(user_module: Callable[[str, str], None]) -> str:
    user_module("plug_unit", PLUG)
    return "plug_unit"


def test_an_entry_resolves_to_its_factory_and_builds_the_policy(plug: str) -> None:
    user_model = user_model_for("default", {"n_items": 30, "n_categories": 3})
    assert plugins.is_plugin(f"{plug}:make") and not plugins.is_plugin("random")
    factory = plugins.load_factory(f"{plug}:make")
    assert factory is sys.modules[plug].make and plugins.factory_inputs(factory) == ()
    policy = plugins.make_plugin_policy(f"{plug}:make", user_model, 5, 3)
    assert isinstance(policy, RandomPolicy) and plugins.plugin_family(f"{plug}:make", policy) == "custom"
    assert plugins.plugin_train_cost(policy, 1.5) == {"wall_s": 1.5, "env_steps": 0}


def test_a_factory_asks_for_the_logs_by_naming_them(plug: str, tmp_path: Path) -> None:
    user_model = user_model_for("default", {"n_items": 30, "n_categories": 3})
    assert plugins.factory_inputs(plugins.load_factory(f"{plug}:with_logs")) == ("logs", "logs_path")
    assert plugins.factory_inputs(plugins.load_factory(f"{plug}:kwargs_only")) == ()  # **options asks for nothing
    plugins.make_plugin_policy(f"{plug}:kwargs_only", user_model, 5, 0, logs=None)  # given only what it names
    logs = pd.DataFrame({"item_id": [1, 2], "behaviour": ["click", "click"]})
    policy = plugins.make_plugin_policy(f"{plug}:with_logs", user_model, 5, 0, logs=logs,
                                        logs_path=tmp_path / "l.parquet")
    cost = plugins.plugin_train_cost(policy, 2.0)
    assert cost == {"rows": 2, "path": str(tmp_path / "l.parquet"), "wall_s": 2.0, "env_steps": 0}


def test_a_policy_reading_the_hidden_state_is_an_oracle(plug: str) -> None:
    user_model = user_model_for("default", {"n_items": 30, "n_categories": 3})
    oracle = plugins.make_plugin_policy(f"{plug}:Oracle", user_model, 5, 0)  # a class is a factory too
    assert isinstance(oracle, OracleGreedyPolicy) and plugins.plugin_family(f"{plug}:Oracle", oracle) == "oracle"
    claims = plugins.make_plugin_policy(f"{plug}:Claims", user_model, 5, 0)
    assert plugins.plugin_family(f"{plug}:Claims", claims) == "rl"
    claims.reads_hidden_state = True
    with pytest.raises(ConfigError, match=r"policy 'plug_unit:Claims' reads the hidden user state.*not family 'rl'"):
        plugins.plugin_family(f"{plug}:Claims", claims)
    claims.reads_hidden_state, claims.family = False, "oracle"
    with pytest.raises(ConfigError, match="declares family 'oracle' but does not read the hidden user state"):
        plugins.plugin_family(f"{plug}:Claims", claims)
    claims.family = "bandit"
    with pytest.raises(ConfigError, match="family 'bandit' is not one of custom, reference, supervised, rl, oracle"):
        plugins.plugin_family(f"{plug}:Claims", claims)


@pytest.mark.parametrize(("entry", "needle"), [
    ("no_such_module_xyz:make", "policy 'no_such_module_xyz:make': No module named 'no_such_module_xyz'"),
    ("plug_unit.sub:make", "No module named 'plug_unit.sub'"),
    ("plug_unit:maek", "module 'plug_unit' (" + "{tmp}" + "/plug_unit.py) has no attribute 'maek'; did you mean "
                       "'make'?"),
    ("plug_unit:NOT_CALLABLE", "plug_unit.NOT_CALLABLE is a int, not a callable factory(user_model, n_users, seed"),
    ("plug_unit:two_args", "plug_unit.two_args(user_model, n_users) cannot be called as factory(user_model, "
                           "n_users, seed[, logs=..., logs_path=...]): too many positional arguments"),
    ("plug_unit:needs_more", "missing a required argument: 'budget'"),
    ("plug_unit:", "expected module.path:factory"),
    ("plug_unit:make:again", "expected module.path:factory"),
])
def test_bad_entries_are_one_line_errors_naming_them(plug: str, tmp_path: Path, entry: str, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        plugins.load_factory(entry)
    message = str(info.value)
    assert needle.replace("{tmp}", str(tmp_path)) in message and "\n" not in message
    assert message.startswith(f"policy '{entry}'")


def test_what_the_factory_does_wrong_is_one_line_naming_the_entry(plug: str) -> None:
    user_model = user_model_for("default", {"n_items": 30, "n_categories": 3})
    with pytest.raises(ConfigError, match=r"^policy 'plug_unit:returns_dict': the factory returned a builtins\.dict, "
                                          r"not a driftrec\.envs\.policy\.Policy$"):
        plugins.make_plugin_policy(f"{plug}:returns_dict", user_model, 5, 0)
    with pytest.raises(ConfigError, match=r"^policy 'plug_unit:raises': the factory raised RuntimeError: out of "
                                          r"coffee$") as info:
        plugins.make_plugin_policy(f"{plug}:raises", user_model, 5, 0)
    assert isinstance(info.value.__cause__, RuntimeError)  # the traceback of the user's code is kept


def test_a_module_that_fails_to_import_is_one_line(user_module: Callable[[str, str], None]) -> None:
    user_module("plug_broken", "import no_such_dependency_xyz\n")
    with pytest.raises(ConfigError, match=r"^policy 'plug_broken:make': importing module 'plug_broken' failed: No "
                                          r"module named 'no_such_dependency_xyz'$"):
        plugins.load_factory("plug_broken:make")
    user_module("plug_syntax", "def make(:\n")
    with pytest.raises(ConfigError, match=r"^policy 'plug_syntax:make': importing module 'plug_syntax' failed: "
                                          r"SyntaxError"):
        plugins.load_factory("plug_syntax:make")


@pytest.mark.parametrize("info", [[1, 2], {"wall_s": -1.0}, {"env_steps": "many"}, {"wall_s": True}])
def test_train_info_must_be_a_mapping_of_numbers(plug: str, info: object, monkeypatch: pytest.MonkeyPatch) -> None:
    user_model = user_model_for("default", {"n_items": 30, "n_categories": 3})
    monkeypatch.setattr(importlib.import_module(plug), "INFO", info)
    with pytest.raises(ConfigError, match=r"^policy 'plug_unit:with_info': train_info"):
        plugins.make_plugin_policy(f"{plug}:with_info", user_model, 5, 0)
