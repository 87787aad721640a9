"""``driftrec presets``: the table of named simulator presets, or every ``SimConfig`` key."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from driftrec.envs.config import SimConfig
from driftrec.envs.presets import PRESETS


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``driftrec presets``."""
    p = sub.add_parser("presets", help="list the simulator presets (or every config key)",
                       description="List the named, versioned simulator presets.")
    p.add_argument("--long", action="store_true", help="add each preset's paragraph of description")
    p.add_argument("--keys", action="store_true",
                   help="list every SimConfig key (default, allowed values, doc) instead")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the presets table, or the config keys with ``--keys``."""
    console = Console()
    if args.keys:
        table = Table(title="SimConfig keys (driftrec simulate --set key=value)")
        table.add_column("key", no_wrap=True, style="bold")
        table.add_column("default", no_wrap=True)
        table.add_column("allowed")
        table.add_column("doc")
        for row in SimConfig.describe():
            table.add_row(*map(escape, row))
    else:
        table = Table(title="driftrec presets", show_lines=args.long)
        table.add_column("name", no_wrap=True, style="bold", min_width=max(map(len, PRESETS)))
        table.add_column("version", justify="right")
        table.add_column("summary")
        for preset in PRESETS.values():
            # --long puts the paragraph under the summary: one wide column reads better than two narrow ones
            text = escape(preset.summary)
            if args.long:
                text += f"\n\n[dim]{escape(preset.description)}[/dim]"
            table.add_row(escape(preset.name), str(preset.version), text)
    console.print(table)
    return 0
