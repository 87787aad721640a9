"""Supervised recommenders trained on event logs, in PyTorch (DESIGN.md, "Agents").

One file per model on a shared base (:mod:`.base`): ``mlp`` (multi-task MLP, logistic with
``layers=0``), ``gru`` (recurrent, GRU or LSTM cell), ``transformer`` (causal self-attention).
Features are rebuilt from the log exactly as the simulator's observation shows them
(:mod:`.data`; the demographics from the log's users table), so a trained model acts as a policy
(:meth:`SupervisedNetwork.as_policy`, :class:`RetrainingPolicy` for periodic retraining while
deployed); :mod:`.registry` makes and loads them by kind. Fine-tuning and retraining follow
:mod:`.adapt` (a lower learning rate, replay of older examples, choices and a gate on the newest
validation data). Metrics are pure functions (:mod:`.metrics`). :func:`train_supervised` is the
one objective used by ``driftrec train``, tuning and tests.
"""

from driftrec.agents.supervised.base import SupervisedNetwork, evaluate, fit
from driftrec.agents.supervised.config import SupervisedConfig
from driftrec.agents.supervised.data import Examples, FeatureSpec, LogDataError, build_examples
from driftrec.agents.supervised.policy import SupervisedPolicy
from driftrec.agents.supervised.registry import NETWORKS, load_network, make_network
from driftrec.agents.supervised.retraining import RetrainingPolicy
from driftrec.agents.supervised.train import train_supervised

__all__ = [
    "NETWORKS",
    "Examples",
    "FeatureSpec",
    "LogDataError",
    "RetrainingPolicy",
    "SupervisedNetwork",
    "SupervisedPolicy",
    "SupervisedConfig",
    "build_examples",
    "evaluate",
    "fit",
    "load_network",
    "make_network",
    "train_supervised",
]
