"""The ``driftrec`` command line.

:data:`COMMANDS` names each subcommand's module and one-line help. Only the chosen command's
module is imported (each registers its full parser with ``add_parser(subparsers)`` and sets
``func(args) -> int``, the exit status, through ``set_defaults``); every other command gets a
stub parser with its name and help, so ``driftrec --help`` lists them all without importing the
simulator, SB3, torch or Optuna. The helpers the commands share live in
:mod:`driftrec.experiments.cliutil`. User mistakes (a bad config key, preset, policy or output
path, an exception in a user's policy factory) print one line, ``driftrec: error: ...``, on stderr
and exit with status 2; nothing is left half-written. ``driftrec --traceback COMMAND ...`` raises
them instead, with the traceback (of the user's code too: it is the error's cause).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from driftrec.experiments.cliutil import CLIError

EXIT_USAGE = 2

COMMANDS: dict[str, tuple[str, str]] = {
    # name -> (module that registers it, one-line help: the same as the module's own parser says,
    # which tests/experiments/test_cli.py checks)
    "presets": ("driftrec.experiments.presets", "list the simulator presets (or every config key)"),
    "simulate": ("driftrec.experiments.simulate", "simulate users under a policy and write their event log (Parquet)"),
    "compare": ("driftrec.experiments.compare", "train and compare every policy on held-out users (the main job)"),
    "bench": ("driftrec.experiments.bench",
              "simulator speed and memory, against CartPoleVectorEnv; --learners: the learners' speed"),
    "train": ("driftrec.experiments.train",
              "train an RL agent (ppo, dqn, a2c, qrdqn, maskable-ppo) or a supervised model"),
    "evaluate": ("driftrec.experiments.train", "evaluate a trained agent on held-out users"),
    "tune": ("driftrec.experiments.tune", "tune hyperparameters with Optuna (ppo, dqn, mlp, gru, transformer)"),
    "load": ("driftrec.experiments.ingest", "convert a raw interaction log (CSV or Parquet) into a driftrec event log"),
    "offline": ("driftrec.experiments.offline",
                "evaluate recommenders offline on a log (leave-last-out, HR@10, NDCG@10, MRR, AUC)"),
    "calibrate": ("driftrec.experiments.calibrate",
                  "fit a preset's knobs to a real event log; write a preset YAML and a report"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``driftrec`` parser: the full parsers of ``command``'s module (it may register more than
    one command: ``train`` and ``evaluate``), a stub (name and help) for every other command."""
    parser = argparse.ArgumentParser(
        prog="driftrec", description="driftrec: recommendation under drifting user interests.")
    parser.add_argument("--traceback", action="store_true",
                        help="on an error, print the full traceback instead of one line")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = COMMANDS[command][0] if command in COMMANDS else None
    for name, (module, help_line) in COMMANDS.items():
        if module != chosen:
            sub.add_parser(name, help=help_line, add_help=False)
        elif name not in sub.choices:  # the module's first command registers all of its commands
            importlib.import_module(module).add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``driftrec`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    # the stubs find the command (or answer --help, a missing or unknown command) as the full parser would
    command = build_parser().parse_known_args(argv)[0].command
    args = build_parser(command).parse_args(argv)
    # here, not at the top: importing driftrec.envs loads the simulator (numba), which `driftrec --help`
    # must not pay for; the chosen command has loaded it already
    from driftrec.envs.config import ConfigError

    try:
        return int(args.func(args))
    except (ConfigError, CLIError, OSError) as err:
        if args.traceback:
            raise
        if isinstance(err, OSError):  # e.g. the disk filled or the folder vanished while writing
            where = f"'{err.filename}': " if err.filename else ""
            return _fail(f"{where}{err.strerror or err}")
        return _fail(str(err))
    except KeyboardInterrupt:
        print("driftrec: interrupted", file=sys.stderr)
        return 130


def _fail(message: str) -> int:
    print(f"driftrec: error: {' '.join(message.split())}", file=sys.stderr)
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
