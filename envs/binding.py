"""How the compiled kernels get their inputs: every knob in one record, every array by name.

Knobs reach the kernels as one record, ``p``, packed from every :class:`SimConfig` field by
:func:`pack_params` (a new knob is one field and its use: ``p.new_knob``). Arrays reach them by
name: each kernel's parameters are named after the :class:`~driftrec.envs.world.World`,
``ShopState`` and ``StepOutput`` (``out_`` prefix) fields they take, and :class:`Call` builds the
argument list from those names, so no call site lists arrays by hand and none can be misplaced.
"""

from __future__ import annotations

import dataclasses
import inspect
import operator
from collections.abc import Mapping
from typing import Any, get_type_hints

import numpy as np

from driftrec.envs.config import SimConfig


def _knob_dtype() -> np.dtype:
    hints = get_type_hints(SimConfig)
    kinds = {bool: np.bool_, int: np.int64, float: np.float64, str: np.int64}
    return np.dtype([(f.name, kinds[hints[f.name]]) for f in dataclasses.fields(SimConfig)], align=True)


KNOB_DTYPE = _knob_dtype()
"""Record dtype of :func:`pack_params`: one field per SimConfig knob, in declaration order."""


def pack_params(cfg: SimConfig) -> np.ndarray:
    """Every knob of ``cfg`` as a one-element numpy record (numbers as they are, a choice as its
    index among the field's choices). Numba types a record in its fast path: a tuple of dozens of
    fields would cost more to dispatch than the whole single-user step."""
    values = []
    for f in dataclasses.fields(SimConfig):
        value = getattr(cfg, f.name)
        values.append(f.metadata["choices"].index(value) if f.metadata.get("choices") else value)
    return np.array([tuple(values)], dtype=KNOB_DTYPE)


# ----------------------------------------------------------------------------- arguments by name
class Call:
    """A compiled kernel whose array arguments are looked up by parameter name.

    The kernel's parameters are, in order: ``leading`` ones passed at call time, then names found
    in ``fixed`` (model-level arrays and values, resolved once), then one run per group
    ``(prefix, dataclass)`` whose names are that dataclass's fields with the prefix. Calling
    ``call(*leading_values, *group_objects)`` passes ``getattr(obj, field)`` for each name, so
    an argument can only be the array its parameter is named after. A parameter that matches
    nothing, or a name that two sources could provide, is a TypeError when the call is built.
    """

    def __init__(self, kernel: Any, leading: int, fixed: Mapping[str, Any], *groups: tuple[str, type]):
        names = list(inspect.signature(kernel.py_func).parameters)
        label = kernel.py_func.__name__
        if len(groups) not in (1, 2):
            raise TypeError(f"kernel {label}: a Call takes one or two groups of fields, got {len(groups)}")
        group_names = [{prefix + f.name for f in dataclasses.fields(cls)} for prefix, cls in groups]
        for i, a in enumerate(group_names):
            clash = a & (set(fixed) | set().union(*group_names[i + 1:]))
            if clash:
                raise TypeError(f"kernel {label}: '{sorted(clash)[0]}' could come from two sources")
        pos = leading
        fixed_args = []
        while pos < len(names) and names[pos] in fixed:
            fixed_args.append(fixed[names[pos]])
            pos += 1
        self.getters: list[_Fields] = []
        self.bound: list[list[str]] = []  # field names per group, in parameter order
        for (prefix, _), fields in zip(groups, group_names, strict=True):
            run = []
            while pos < len(names) and names[pos] in fields:
                run.append(names[pos][len(prefix):])
                pos += 1
            self.bound.append(run)
            self.getters.append(_Fields(run))
        if pos < len(names):
            raise TypeError(f"kernel {label}: parameter '{names[pos]}' is not a fixed value nor, in order, a "
                            f"field of {', '.join(cls.__name__ for _, cls in groups)}")
        self.kernel, self.leading, self.fixed = kernel, leading, tuple(fixed_args)

    def __call__(self, *args: Any) -> Any:
        lead, objs = args[:self.leading], args[self.leading:]
        if len(objs) == 1:
            return self.kernel(*lead, *self.fixed, *self.getters[0](objs[0]))
        return self.kernel(*lead, *self.fixed, *self.getters[0](objs[0]), *self.getters[1](objs[1]))


class _Fields:
    """``obj -> (obj.a, obj.b, ...)`` for a list of field names (picklable, unlike a lambda)."""

    def __init__(self, names: list[str]):
        self.names = tuple(names)
        self.get = operator.attrgetter(*names) if len(names) > 1 else None

    def __call__(self, obj: Any) -> tuple[Any, ...]:
        if self.get is not None:
            return self.get(obj)
        return tuple(getattr(obj, name) for name in self.names)
