"""Policies from the user's own modules: the ``module.path:factory`` entries of compare's ``policies``.

A plugin entry names a callable ``factory(user_model, n_users, seed)`` (plus ``logs=`` and/or
``logs_path=`` when its signature names them) that returns a :class:`driftrec.envs.policy.Policy`.
What the factory receives, which seeds it may use, what its policy may read, how its family and
training cost are recorded: the README's "Your own policy in compare" is the guide for plugin
authors, and :class:`driftrec.envs.policy.Policy` the contract its policy keeps.

Every mistake is one :class:`ConfigError` line naming the entry: :func:`load_factory` checks the
entry, the import, the attribute and the signature before anything runs; :func:`make_plugin_policy`
reports an exception of the factory itself, or a return value that is not a Policy.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import inspect
import numbers
import re
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from driftrec.envs.config import ConfigError
from driftrec.envs.policy import Policy

PLUGIN_INPUTS = ("logs", "logs_path")
"""What a factory receives by keyword when its signature names it: the world's logged events (a
DataFrame, :func:`driftrec.envs.events.load_events`) and the path of their Parquet file (its users
table, the demographics, lies beside it: :func:`driftrec.envs.events.load_users`)."""
FAMILIES = ("custom", "reference", "supervised", "rl", "oracle")
"""The families a plugin policy may declare with a ``family`` attribute: ``custom`` (the default: a
deployable policy in no built-in family), ``reference``, ``supervised``, ``rl`` (it then joins that
family's comparisons), ``oracle`` (it reads the hidden user state; the only family such a policy may have)."""
DEFAULT_FAMILY = "custom"
ORACLE_FAMILY = "oracle"
_ENTRY = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*")
SIGNATURE = "factory(user_model, n_users, seed[, logs=..., logs_path=...])"
"""How compare calls a factory, as error messages name it."""


def is_plugin(name: str) -> bool:
    """Whether a ``policies`` entry names a user's factory (``module.path:factory``) rather than a built-in policy."""
    return ":" in name


def load_factory(entry: str) -> Callable[..., Any]:
    """The callable that ``entry`` (``module.path:factory``) names, imported and checked against
    :data:`SIGNATURE` (without calling it). Raises ConfigError, one line naming the entry."""
    if not _ENTRY.fullmatch(entry):
        raise ConfigError(f"policy '{entry}': expected module.path:factory (a dotted module importable from the "
                          "current folder or the Python path, a colon, the name of a callable in it)")
    module_name, _, attr = entry.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name is not None and f"{module_name}.".startswith(f"{err.name}."):  # the module or a parent of it
            raise ConfigError(f"policy '{entry}': No module named '{err.name}' (run from the folder that holds it, "
                              "or put its folder on PYTHONPATH)") from None
        raise ConfigError(f"policy '{entry}': importing module '{module_name}' failed: {err}") from err
    except Exception as err:  # the user's module raised while importing: say so in one line
        raise ConfigError(f"policy '{entry}': importing module '{module_name}' failed: "
                          f"{type(err).__name__}: {err}") from err
    if not hasattr(module, attr):
        names = [n for n in vars(module) if not n.startswith("_") and callable(getattr(module, n))]
        close = difflib.get_close_matches(attr, names, n=1)
        where = getattr(module, "__file__", None) or module_name
        raise ConfigError(f"policy '{entry}': module '{module_name}' ({where}) has no attribute '{attr}'"
                          + (f"; did you mean '{close[0]}'?" if close else ""))
    factory = getattr(module, attr)
    if not callable(factory):
        raise ConfigError(f"policy '{entry}': {module_name}.{attr} is a {type(factory).__name__}, not a callable "
                          f"{SIGNATURE}")
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # a builtin or extension callable without a signature: found out when called
        return factory
    try:
        signature.bind(None, None, None, **dict.fromkeys(factory_inputs(factory)))
    except TypeError as err:
        raise ConfigError(f"policy '{entry}': {module_name}.{attr}{signature} cannot be called as {SIGNATURE}: "
                          f"{err}") from None
    return factory


def factory_inputs(factory: Callable[..., Any]) -> tuple[str, ...]:
    """The :data:`PLUGIN_INPUTS` that ``factory`` names as parameters it can take by keyword (a
    ``**kwargs`` asks for none of them)."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return ()
    keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return tuple(name for name in PLUGIN_INPUTS if name in params and params[name].kind in keyword)


def make_plugin_policy(entry: str, user_model: Any, n_users: int, seed: int, **inputs: Any) -> Policy:
    """``factory(user_model, n_users, seed, ...)`` of ``entry``, given those of ``inputs`` (of
    :data:`PLUGIN_INPUTS`) that it names (:func:`factory_inputs`), checked to be a Policy with a valid
    family and ``train_info``. An exception of the factory, or anything else it returns, is one
    ConfigError line naming the entry (the original exception is its ``__cause__``)."""
    factory = load_factory(entry)
    with raised_by(entry, "the factory"):
        policy = factory(user_model, n_users, seed, **{k: inputs[k] for k in factory_inputs(factory) if k in inputs})
    if not isinstance(policy, Policy):
        raise ConfigError(f"policy '{entry}': the factory returned a {type(policy).__module__}."
                          f"{type(policy).__qualname__}, not a driftrec.envs.policy.Policy")
    plugin_family(entry, policy)
    info = getattr(policy, "train_info", None)
    if info is not None and not isinstance(info, Mapping):
        raise ConfigError(f"policy '{entry}': train_info must be a mapping (wall_s, env_steps, ...), got a "
                          f"{type(info).__name__}")
    for key in ("wall_s", "env_steps"):
        value = (info or {}).get(key)
        if value is not None and not (isinstance(value, numbers.Real) and not isinstance(value, bool) and value >= 0):
            raise ConfigError(f"policy '{entry}': train_info['{key}'] must be a number >= 0, got {value!r}")
    return policy


@contextlib.contextmanager
def raised_by(entry: str, what: str) -> Iterator[None]:
    """Run the user's code of ``entry`` (``what``: "the factory", "its policy"): an exception it raises
    becomes one ConfigError line naming the entry, with the original as its ``__cause__`` (`driftrec
    --traceback` shows where it came from)."""
    try:
        yield
    except Exception as err:
        lines = str(err).strip().splitlines()
        raise ConfigError(f"policy '{entry}': {what} raised {type(err).__name__}: {lines[0] if lines else ''}") from err


def build_plugin(entry: str, user_model: Any, n_users: int, seed: int,
                 **inputs: Any) -> tuple[Policy, dict[str, Any]]:
    """:func:`make_plugin_policy` and what it cost (:func:`plugin_train_cost`, timing the factory)."""
    start = time.perf_counter()
    policy = make_plugin_policy(entry, user_model, n_users, seed, **inputs)
    return policy, plugin_train_cost(policy, time.perf_counter() - start)


def plugin_family(entry: str, policy: Policy) -> str:
    """The family of a plugin's policy: its ``family`` attribute (default :data:`DEFAULT_FAMILY`), and
    :data:`ORACLE_FAMILY` whenever it reads the hidden user state. ConfigError for a family not in
    :data:`FAMILIES`, or a policy that reads the hidden state while declaring another family."""
    declared = getattr(policy, "family", None)
    if declared is not None and declared not in FAMILIES:
        raise ConfigError(f"policy '{entry}': family {declared!r} is not one of {', '.join(FAMILIES)}")
    if getattr(policy, "reads_hidden_state", False):
        if declared not in (None, ORACLE_FAMILY):
            raise ConfigError(f"policy '{entry}' reads the hidden user state, so it is a reference that no shop "
                              f"could deploy, not family '{declared}': declare family '{ORACLE_FAMILY}' or act on "
                              "observations alone")
        return ORACLE_FAMILY
    if declared == ORACLE_FAMILY:
        raise ConfigError(f"policy '{entry}' declares family '{ORACLE_FAMILY}' but does not read the hidden user "
                          "state (reads_hidden_state is false)")
    return declared or DEFAULT_FAMILY


def plugin_train_cost(policy: Policy, factory_wall_s: float) -> dict[str, Any]:
    """What building a plugin's policy cost: its ``train_info`` (``wall_s``, ``env_steps``: the
    simulator user-steps it took itself, and any other keys, kept as they are), with the factory's
    wall time as ``wall_s`` and 0 env steps where ``train_info`` does not say."""
    info = dict(getattr(policy, "train_info", None) or {})
    return {**info, "wall_s": float(info.get("wall_s", factory_wall_s)), "env_steps": int(info.get("env_steps", 0))}
