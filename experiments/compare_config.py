"""What ``driftrec compare`` runs: the policy names it knows, their families, :class:`CompareConfig`
and the packaged ``experiments/configs/benchmark.yaml`` with its profiles (:func:`load_config`)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from driftrec.agents import plugins
from driftrec.envs.config import Config, ConfigError, knob, read_yaml_mapping
from driftrec.envs.presets import PRESETS, is_preset_path, preset_config, resolve_preset

REFERENCE = ("random", "popularity", "logging", "oracle-greedy", "oracle-planner")
RL_ALGOS = ("ppo", "dqn", "a2c", "qrdqn", "maskable-ppo")
SUPERVISED = ("mlp", "gru", "transformer")
VARIANTS = ("finetune", "retrain")
WARM = "warm"
"""``<algo>-warm``: the RL agent starts from the world's ``mlp`` distilled on the logs
(:mod:`driftrec.agents.warm_start`), then trains the same budget as the cold ``<algo>``."""
WARM_TEACHER = "mlp"  # reads the ``features`` observation that the RL agents read
LOGS, TEACHER = "logs", "teacher"
"""The steps of a world before its cells (:meth:`WorldRun.plan`): simulating the logs, training the warm agents'
teacher."""
PROFILES = ("smoke", "quick", "standard", "full")
DEFAULT_PROFILE = "quick"
RESUMABLE = ("presets", "seeds", "first_seed", "policies", "trace_users", "jobs", "backend", "address", "ray_cpus",
             "cell_cpus")
"""Fields a finished run folder may be resumed with different values of (they add or drop cells)."""


def family(policy: str) -> str:
    """'reference', 'supervised' or 'rl'; 'custom' for a ``module:factory`` (its policy may declare another)."""
    if plugins.is_plugin(policy):
        return plugins.DEFAULT_FAMILY
    if policy in REFERENCE:
        return "reference"
    return "rl" if policy.removesuffix(f"-{WARM}") in RL_ALGOS else "supervised"


def uses_logs(policy: str) -> bool:
    """Whether the cell of ``policy`` reads the world's logs (all but the references that need none and cold RL)."""
    return policy not in ("random", "logging", "oracle-greedy", "oracle-planner") and policy not in RL_ALGOS


def check_policy(name: str) -> None:
    """Raise ConfigError unless ``name`` is a policy compare knows or a ``module.path:factory`` it can import."""
    kind, _, variant = name.partition("-")
    if name in REFERENCE or name.removesuffix(f"-{WARM}") in RL_ALGOS \
            or (kind in SUPERVISED and (not variant or variant in VARIANTS)) \
            or (plugins.is_plugin(name) and plugins.load_factory(name)):  # a bad one raises, naming itself
        return
    known = [*REFERENCE, *SUPERVISED, *(f"{k}-{v}" for k in SUPERVISED for v in VARIANTS), *RL_ALGOS,
             *(f"{a}-{WARM}" for a in RL_ALGOS)]
    raise ConfigError(f"unknown policy '{name}' in policies; choose from: {', '.join(known)}, or module:factory")


@dataclasses.dataclass(frozen=True)
class CompareConfig(Config):
    """What ``driftrec compare`` runs: presets, seeds, policies, users and budgets (see benchmark.yaml)."""

    label = "compare config"
    unknown_hint = "; see experiments/configs/benchmark.yaml"

    presets: tuple[str, ...] = knob(("default",), "simulator presets (names or preset YAML files): one world per "
                                                  "preset and seed", distinct=True)
    policies: tuple[str, ...] = knob((*REFERENCE, *SUPERVISED, "gru-finetune", "mlp-retrain", "ppo", "dqn", "ppo-warm",
                                      "dqn-warm"), "policies compared: references (oracle-planner, the upper one, "
                                                   "tuned on validation users), supervised models (-finetune, "
                                                   "-retrain), RL agents (-warm), yours: module:factory", distinct=True)
    seeds: int = knob(1, "seeds (worlds: catalog and users) first_seed, first_seed + 1, ...", 1, 1000)
    first_seed: int = knob(0, "first seed", 0, 2**31 - 1)
    log_users: int = knob(1000, "users of the logging policy whose events train popularity and the supervised models",
                          1, 10_000_000)
    equal_requests: bool = knob(True, "the logs hold at least rl_timesteps requests (more logging-policy users than "
                                      "log_users where needed), so the supervised models learn from as many "
                                      "requests as a cold RL agent trains on")
    epsilon: float = knob(0.3, "the logging policy's probability of a uniform random item per position", 0.0, 1.0)
    eval_users: int = knob(1000, "held-out evaluation users, the same for every policy", 2, 10_000_000)
    rl_timesteps: int = knob(200_000, "training user-steps of each RL agent", 1, 10**10)
    rl_users: int = knob(0, "users stepped together while an RL agent trains (SB3 n_envs; 0: the algorithm's "
                            "hyperparameters')", 0, 1_000_000)
    rl_evaluations: int = knob(5, "validations on held-out users while an RL agent trains (0: none)", 0, 10_000)
    rl_eval_users: int = knob(128, "held-out validation users of RL training", 1, 1_000_000)
    warm_start_steps: int = knob(500, "<algo>-warm: gradient steps distilling the world's mlp into the agent on "
                                      "the logs before RL", 1, 10_000_000)
    finetune_days: float = knob(7.0, "<kind>-finetune: fine-tune on the log's last this many days", 0.01, 3650.0)
    retrain_every_days: float = knob(3.0, "<kind>-retrain: refit while deployed every this many days", 0.01, 3650.0)
    retrain_window_days: float = knob(7.0, "<kind>-retrain: refit on the newest this many days", 0.01, 3650.0)
    trace_users: int = knob(4, "evaluation users whose interest trajectories are drawn (0: none)", 0, 64)
    jobs: int = knob(1, "worlds (preset, seed) run at once, each in its own process; a world's numbers do not "
                        "depend on it", 1, 256)
    backend: str = knob("local", "where the cells run: local (this process, or `jobs` processes) or ray (each "
                                 "cell a Ray task; pip install -e \".[ray]\"); the numbers do not depend on it",
                         choices=("local", "ray"))
    address: str = knob("", "ray backend: HOST:PORT of a running Ray cluster's head (empty: a local cluster "
                            "is started for the run)")
    ray_cpus: int = knob(0, "ray backend: CPUs of the local cluster started for the run (0: the machine's)",
                         0, 4096)
    cell_cpus: float = knob(1.0, "ray backend: CPUs each cell reserves on the cluster (its torch threads: "
                                 "torch_threads)", 0.01, 1024.0)
    torch_threads: int = knob(1, "torch threads (0: torch's default); one is ~15% slower on an idle 2-core machine "
                                 "and many times faster when other processes share the cores; the count changes "
                                 "floating-point sums, so it is part of what makes a run reproducible", 0, 1024)
    sim: Mapping[str, Any] = knob({}, "SimConfig keys laid over every preset")
    supervised: Mapping[str, Any] = knob({}, "SupervisedConfig keys (epochs, hidden, lr, ...)")
    hyperparams: Mapping[str, Any] = knob({}, "per RL algorithm, rl-zoo3 keys over agents/hyperparams/<algo>.yml, "
                                              "or the path of such a YAML file")

    @property
    def seed_list(self) -> list[int]:
        return list(range(self.first_seed, self.first_seed + self.seeds))

    def check(self) -> None:
        """Check the presets, policies and nested mappings (each mistake: one ConfigError line)."""
        for preset in self.presets:
            if preset not in PRESETS and not is_preset_path(preset):
                raise ConfigError(f"unknown preset '{preset}' in presets; choose from: {', '.join(PRESETS)}, "
                                  "or a preset YAML file")
            resolve_preset(preset)  # a bad preset file: one line naming it
        labels = [resolve_preset(p).name for p in self.presets]
        if len(set(labels)) != len(labels):
            raise ConfigError(f"presets must have distinct names, got {labels}")
        for policy in self.policies:
            check_policy(policy)
        if self.address and not re.fullmatch(r"[\w.-]+:\d{1,5}", self.address):
            raise ConfigError(f"address must be HOST:PORT of a Ray cluster's head, got '{self.address}'")
        if self.address and self.backend != "ray":
            raise ConfigError(f"address '{self.address}' is a Ray cluster's: use backend ray, or drop the address")
        for preset in self.presets:
            try:
                cfg = preset_config(preset, self.sim)
            except ConfigError as err:
                raise ConfigError(f"sim: {err}") from None
            if cfg.model != "shop" and any(family(p) == "supervised" or p.endswith(f"-{WARM}")
                                           for p in self.policies):
                raise ConfigError(f"preset '{preset}' uses the {cfg.model} user model; the supervised models "
                                  "need ShopSim, and so do the warm-started agents: drop them from policies or the "
                                  "preset")
        from driftrec.agents.supervised.config import SupervisedConfig  # the package imports torch: only here

        try:
            SupervisedConfig.from_dict(self.supervised)
        except ConfigError as err:
            raise ConfigError(f"supervised: {err}") from None
        for algo, value in self.hyperparams.items():
            if algo not in RL_ALGOS:
                raise ConfigError(f"hyperparams: unknown algorithm '{algo}'; choose from: {', '.join(RL_ALGOS)}")
            if not isinstance(value, (Mapping, str)):
                raise ConfigError(f"hyperparams.{algo} must be a mapping of rl-zoo3 keys or a YAML file path")
            if isinstance(value, str) and not Path(value).is_file():
                raise ConfigError(f"hyperparams.{algo}: file '{value}' does not exist")
            if isinstance(value, Mapping) and value:
                from driftrec.agents.rl import check_hyperparams  # imports SB3: only when there is something to check

                check_hyperparams(algo, value, where=f" (hyperparams.{algo})")


# ------------------------------------------------------------------------------------- config files
def default_config_path() -> Path:
    """The packaged ``experiments/configs/benchmark.yaml``."""
    return Path(str(resources.files("driftrec.experiments") / "configs" / "benchmark.yaml"))


def load_config(path: str | Path | None = None, profile: str = DEFAULT_PROFILE,
                overrides: Mapping[str, Any] | None = None) -> CompareConfig:
    """The config of ``path`` (default: the packaged benchmark): its ``defaults``, the ``profile``
    laid over them, then ``overrides`` (dotted keys reach into ``sim``, ``supervised``, ``hyperparams``; mappings
    merge key by key)."""
    path = Path(path) if path is not None else default_config_path()
    data = read_yaml_mapping(path, "config file")
    unknown = set(data) - {"defaults", "profiles"}
    if unknown:
        raise ConfigError(f"config file '{path}': unknown top-level key '{sorted(unknown)[0]}' "
                          "(expected 'defaults' and 'profiles')")
    profiles = data.get("profiles") or {}
    if profile not in profiles:
        raise ConfigError(f"config file '{path}' has no profile '{profile}'; it has: {', '.join(profiles) or 'none'}")
    try:
        cfg = CompareConfig.from_dict(data.get("defaults") or {})
        cfg = CompareConfig.from_dict(profiles[profile] or {}, base=cfg)
        return CompareConfig.from_dict(overrides or {}, base=cfg)
    except ConfigError as err:
        raise ConfigError(f"{path} (profile {profile}): {err}") from None
