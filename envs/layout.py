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
