"""Named slices of a flat observation vector, with their bounds and meaning."""

from __future__ import annotations

import dataclasses

import numpy as np
from gymnasium import spaces


@dataclasses.dataclass(frozen=True)
class Part:
    name: str
    slice: slice
    low: float
    high: float
    doc: str


class Layout:
    """Ordered named parts of a flat float32 vector; ``layout["name"]`` is the part's slice."""

    def __init__(self) -> None:
        self.parts: dict[str, Part] = {}
        self.size = 0

    def add(self, name: str, width: int, low: float, high: float, doc: str) -> None:
        self.parts[name] = Part(name, slice(self.size, self.size + width), low, high, doc)
        self.size += width

    def __getitem__(self, name: str) -> slice:
        return self.parts[name].slice

    def __contains__(self, name: str) -> bool:
        return name in self.parts

    def slices(self) -> dict[str, slice]:
        """Name -> slice, in order."""
        return {name: part.slice for name, part in self.parts.items()}

    def box(self) -> spaces.Box:
        """The float32 Box whose per-element bounds are the parts' bounds."""
        low = np.empty(self.size, dtype=np.float32)
        high = np.empty(self.size, dtype=np.float32)
        for part in self.parts.values():
            low[part.slice], high[part.slice] = part.low, part.high
        return spaces.Box(low, high, dtype=np.float32)

    def describe(self) -> str:
        """A Markdown table of the layout (name, columns, bounds, meaning)."""
        lines = ["| part | columns | bounds | meaning |", "|---|---|---|---|"]
        for p in self.parts.values():
            lines.append(f"| {p.name} | {p.slice.start}:{p.slice.stop} | [{p.low:g}, {p.high:g}] | {p.doc} |")
        return "\n".join(lines)


def slate_action_space(n_actions: int, slate_size: int) -> spaces.Space:
    """``Discrete(n)`` for one item, ``MultiDiscrete([n] * K)`` for a slate of K."""
    if slate_size == 1:
        return spaces.Discrete(n_actions)
    return spaces.MultiDiscrete(np.full(slate_size, n_actions, dtype=np.int64))


def observation_space(layout: Layout, obs_mode: str, history_len: int, n_items: int,
                      n_behaviours: int) -> spaces.Space:
    """The flat Box of ``layout``, or for ``history`` a Dict adding the last ``history_len`` item ids
    (``n_items`` pads) and behaviour codes (0 pads)."""
    flat = layout.box()
    if obs_mode != "history":
        return flat
    return spaces.Dict({
        "features": flat,
        "item_ids": spaces.MultiDiscrete(np.full(history_len, n_items + 1, dtype=np.int64)),
        "behaviours": spaces.MultiDiscrete(np.full(history_len, n_behaviours + 1, dtype=np.int64)),
    })
