"""The event log: the common currency of driftrec (DESIGN.md, "Event log").

Every simulated step emits interaction events, one row each; supervised models train on them,
real shop logs load into the same columns, and they live on disk as Parquet.

| column | type | meaning |
|---|---|---|
| user_id | int64 | the user (``driftrec simulate`` writes its seed: ``reset(seed=user_id)`` replays it) |
| session_id | int64 | session index within the user's life (0, 1, ...) |
| timestamp | timestamp[ms] | simulated time, UTC, days after the fixed epoch 2026-01-01 |
| item_id | int64 | item id; -1 for a search |
| category | int32 | the item's category; a search's searched category |
| position | int16 | slate position; -1 for organic events (search, view) |
| behaviour | string | search, view, impression, click, cart or purchase |
| price | float64 | the item's price; NaN for a search |
| reward | float64 | the part of the step reward this behaviour earned (see below) |
| propensity | float64 | the logging policy's probability of the item at that position; NaN when unknown |

Reward split: click -> ``reward_click``, cart -> ``reward_cart``, purchase -> ``reward_purchase +
reward_revenue * price``, impression / search / view -> 0, so the rows of a step sum to its reward.
For recsim-ie the click row carries the step's whole reward (the watch time).

Within one step the rows come in the order impressions (by position), click, cart, purchase,
then the organic search and view that follow the request.

## The users table: what the shop knows of each user

Beside an event log ``X.parquet`` lies its users table ``X.users.parquet`` (:func:`users_path`,
:data:`USER_SCHEMA`): one row per user with the demographics a shop holds in its customer
records (DESIGN.md, "Experiments": logs "carry what a shop knows of a user"). They are a user's
attributes, not events, so they live in a table of their own and the event rows keep
:data:`EVENT_SCHEMA`, the common currency that real logs load into.

| column | type | meaning |
|---|---|---|
| user_id | int64 | the user, as in the event log |
| age | int8 | age bucket 0..3; -1 unknown |
| gender | int8 | gender bucket 0..1; -1 unknown |
| income | int8 | income bucket 0..2; -1 unknown |

These are the indices of the one-hot ``demographics`` part of ShopSim's observation. A
simulated log's table comes from :meth:`EventRecorder.users_table` (:func:`simulated_users`),
written by :class:`EventWriter` (``write_users``); a log without the table (a shop's own log
loaded by ``driftrec load``, or a log written before the table existed) has unknown
demographics, and the supervised models' demographic features are then zero (as they are for a
user missing from the table).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from driftrec.envs.rng import user_keys
from driftrec.envs.state import BEHAVIOURS, CART, CLICK, IMPRESSION, PURCHASE, SEARCH, VIEW, StepOutput
from driftrec.envs.world import N_AGE, N_GENDER, N_INCOME

EVENT_SCHEMA = pa.schema([
    pa.field("user_id", pa.int64()),
    pa.field("session_id", pa.int64()),
    pa.field("timestamp", pa.timestamp("ms")),
    pa.field("item_id", pa.int64()),
    pa.field("category", pa.int32()),
    pa.field("position", pa.int16()),
    pa.field("behaviour", pa.string()),
    pa.field("price", pa.float64()),
    pa.field("reward", pa.float64()),
    pa.field("propensity", pa.float64()),
])
"""Columns and types of every event log (in memory and in Parquet)."""

USER_SCHEMA = pa.schema([
    pa.field("user_id", pa.int64()),
    pa.field("age", pa.int8()),
    pa.field("gender", pa.int8()),
    pa.field("income", pa.int8()),
])
"""Columns and types of the users table beside an event log (see the module doc); -1 is unknown."""

DEMOGRAPHICS: tuple[tuple[str, int], ...] = (("age", N_AGE), ("gender", N_GENDER), ("income", N_INCOME))
"""The users table's demographic columns and their bucket counts, in the order of the observation's
one-hot ``demographics`` part."""

BEHAVIOUR_NAMES: tuple[str, ...] = BEHAVIOURS
"""Values of the ``behaviour`` column; the code of a name is its index + 1 (see envs/state.py)."""

LOG_CONFIG_KEY = b"driftrec.sim_config"
"""Parquet schema-metadata key of the JSON of the SimConfig that simulated a log (see EventWriter)."""

EPOCH = np.datetime64("2026-01-01T00:00:00", "ms")
"""Simulated day 0, in UTC."""

MS_PER_DAY = 86_400_000
_EPOCH_MS = int(EPOCH.astype(np.int64))
_BEHAVIOUR_ARRAY = pa.array(BEHAVIOURS, type=pa.string())  # code - 1 -> name, for one vectorised take


class EventLogError(ValueError):
    """An events file is missing, unreadable, or does not follow :data:`EVENT_SCHEMA` (one-line message)."""


def users_path(events_path: str | os.PathLike[str]) -> Path:
    """The users table beside an events file: ``events.parquet`` -> ``events.users.parquet``."""
    path = Path(events_path)
    stem = path.name[:-len(".parquet")] if path.name.endswith(".parquet") else path.name
    return path.with_name(f"{stem}.users.parquet")


def simulated_users(user_model: Any, user_ids: np.ndarray, batch: int = 65_536) -> pa.Table:
    """The users table (:data:`USER_SCHEMA`) of simulated users: the demographics ``user_model`` gives
    the first life of each seed in ``user_ids``.

    A simulated log names each user by its seed (``driftrec.envs.rollout.rollout`` records
    ``user_id = seed``; ``reset(seed=user_id)`` replays the user), so this is the shop's record
    of the users of such a log, or of the users a deployed policy serves. Rows are sorted by
    ``user_id``, one per distinct id. A user model without demographics (recsim-ie) knows none:
    the table is empty.
    """
    ids = np.unique(np.asarray(user_ids, dtype=np.int64).reshape(-1))
    if not _has_demographics(user_model) or not ids.size:
        return USER_SCHEMA.empty_table()
    codes = np.empty((ids.size, len(DEMOGRAPHICS)), dtype=np.int8)
    for lo in range(0, ids.size, batch):
        part = ids[lo:lo + batch]
        demo = user_model.init(user_keys(part), np.zeros(part.size, dtype=np.int64)).demo
        start = 0
        for j, (_, width) in enumerate(DEMOGRAPHICS):
            codes[lo:lo + part.size, j] = demo[:, start:start + width].argmax(axis=1)
            start += width
    return pa.Table.from_arrays([pa.array(ids), *(pa.array(codes[:, j]) for j in range(len(DEMOGRAPHICS)))],
                                schema=USER_SCHEMA)


def _has_demographics(user_model: Any) -> bool:
    layout = getattr(user_model, "layout", None)
    return layout is not None and "demographics" in layout


class EventRecorder:
    """Accumulates the events of batched steps of ``user_model`` as columnar numpy chunks.

    ``record`` costs a few vectorised numpy calls per step (no per-event Python); ``to_table``
    concatenates and sorts once at the end. ``users_table`` gives the users table of the users
    recorded, which must be named by their seeds (as :func:`driftrec.envs.rollout.rollout` does).
    """

    def __init__(self, user_model: Any):
        self.user_model = user_model
        self._category = np.asarray(user_model.world.category)
        self._price = np.asarray(user_model.world.price, dtype=np.float64)
        cfg = user_model.cfg
        self._recsim = cfg.model == "recsim-ie"
        self._reward_click, self._reward_cart = float(cfg.reward_click), float(cfg.reward_cart)
        self._reward_purchase, self._reward_revenue = float(cfg.reward_purchase), float(cfg.reward_revenue)
        self._chunks: list[dict[str, np.ndarray]] = []
        self._n_events = 0

    @property
    def n_events(self) -> int:
        """Events recorded so far."""
        return self._n_events

    def clear(self) -> None:
        """Forget every recorded event (to reuse the recorder for the next batch of users)."""
        self._chunks.clear()
        self._n_events = 0

    def record(self, out: StepOutput, user_id: np.ndarray, propensity: np.ndarray | None = None,
               active: np.ndarray | None = None) -> None:
        """Append the events of one batched step.

        ``user_id`` (N,) names each row's user; ``propensity`` (N, K) (or (N,) for K = 1) is the
        logging policy's probability of each slate position's item, None when unknown;
        ``active`` (N,) bool keeps only the rows where True (users already done are not logged).
        """
        n, k = out.items.shape
        user_id = np.asarray(user_id, dtype=np.int64).reshape(n)
        act = np.ones(n, dtype=bool) if active is None else np.asarray(active, dtype=bool).reshape(n)

        # the rows of each behaviour, in their order within a step: impressions (np.nonzero is
        # row-major, so by user then position), the funnel on the clicked item, then the organic
        # search and view that follow the request
        r_imp, p_imp = np.nonzero(out.shown & act[:, None])
        clicked = act & (out.click_pos >= 0)
        r_click, r_cart, r_buy = (np.flatnonzero(m) for m in (clicked, clicked & out.cart, clicked & out.purchase))
        r_search = np.flatnonzero(act & (out.search_cat >= 0))
        r_view = np.flatnonzero(act & (out.view_item >= 0))
        n_slate = r_imp.size + r_click.size + r_cart.size + r_buy.size
        row = np.concatenate([r_imp, r_click, r_cart, r_buy, r_search, r_view])
        if not row.size:
            return
        code = np.repeat(np.array([IMPRESSION, CLICK, CART, PURCHASE, SEARCH, VIEW], dtype=np.int8),
                         [r_imp.size, r_click.size, r_cart.size, r_buy.size, r_search.size, r_view.size])
        pos = np.full(row.size, -1, dtype=np.int64)
        pos[:r_imp.size] = p_imp
        pos[r_imp.size:n_slate] = out.click_pos[row[r_imp.size:n_slate]]
        slate = slice(0, n_slate)
        item = np.empty(row.size, dtype=np.int64)
        item[slate] = out.items[row[slate], pos[slate]]
        item[n_slate:n_slate + r_search.size] = -1
        item[n_slate + r_search.size:] = out.view_item[r_view]
        known = item >= 0
        cat = self._category[np.where(known, item, 0)]
        cat[~known] = out.search_cat[r_search]  # only searches have no item
        price = np.where(known, self._price[np.where(known, item, 0)], np.nan)

        reward = np.zeros(row.size)
        a = r_imp.size
        b, c = a + r_click.size, a + r_click.size + r_cart.size
        reward[a:b] = out.reward[r_click] if self._recsim else self._reward_click
        reward[b:c] = self._reward_cart
        reward[c:n_slate] = self._reward_purchase + self._reward_revenue * price[c:n_slate]
        prop = np.full(row.size, np.nan)
        if propensity is not None:
            prop[slate] = np.asarray(propensity, dtype=np.float64).reshape(n, k)[row[slate], pos[slate]]

        organic = np.arange(row.size) >= n_slate
        time = np.where(organic, out.organic_time[row], out.time[row])
        self._chunks.append({
            "user_id": user_id[row],
            "session_id": np.where(organic, out.organic_session[row], out.session[row]).astype(np.int64),
            "timestamp": np.rint(time * MS_PER_DAY).astype(np.int64) + _EPOCH_MS,
            "item_id": item,
            "category": cat.astype(np.int32),
            "position": pos.astype(np.int16),
            "code": code,
            "price": price,
            "reward": reward,
            "propensity": prop,
        })
        self._n_events += row.size

    def to_table(self) -> pa.Table:
        """Every recorded event as a table of :data:`EVENT_SCHEMA`, sorted by user, time and the
        order of behaviours within a step."""
        if not self._chunks:
            return EVENT_SCHEMA.empty_table()
        cols = {name: np.concatenate([c[name] for c in self._chunks]) for name in self._chunks[0]}
        # seq (recording order) breaks ties: within a step it is the behaviour order, and across
        # steps it keeps a step's organic events before the next request at the same millisecond
        seq = np.arange(len(cols["user_id"]))
        order = np.lexsort((seq, cols["timestamp"], cols["user_id"]))
        arrays: dict[str, pa.Array] = {name: pa.array(col[order]) for name, col in cols.items() if name != "code"}
        arrays["timestamp"] = arrays["timestamp"].cast(pa.timestamp("ms"))
        arrays["behaviour"] = _BEHAVIOUR_ARRAY.take(pa.array(cols["code"][order] - 1))
        return pa.Table.from_arrays([arrays[f.name] for f in EVENT_SCHEMA], schema=EVENT_SCHEMA)

    def users_table(self) -> pa.Table:
        """The users table (:data:`USER_SCHEMA`) of every user recorded so far: their demographics,
        from :func:`simulated_users` (so ``user_id`` must be each user's seed, as the rollout records it)."""
        if not self._chunks:
            return USER_SCHEMA.empty_table()
        return simulated_users(self.user_model, np.concatenate([c["user_id"] for c in self._chunks]))

    def write_parquet(self, path: str | os.PathLike[str]) -> Path:
        """Write the events to ``path`` and their users table beside it (:func:`users_path`),
        atomically (nothing is left half-written on a crash)."""
        with EventWriter(path) as writer:
            writer.write(self.to_table())
            writer.write_users(self.users_table())
        return Path(path)


class EventWriter:
    """Streams event tables into one Parquet file, atomically.

    Rows go to a temporary file in the destination's folder, which replaces ``path`` (``os.replace``)
    only on a clean ``close``; an exception inside the ``with`` block (or ``abort``) deletes it. So a
    crash or Ctrl-C never leaves a half-written log under the final name. The users table
    (``write_users``) goes beside it (:func:`users_path`) on the same ``close``; a log closed without
    one removes the table an earlier log of that name left, so no log is paired with other users'.
    """

    def __init__(self, path: str | os.PathLike[str], sim_config: Any = None):
        """``sim_config`` (a SimConfig) is stored in the file's metadata (``LOG_CONFIG_KEY``), so
        that a log tells what simulated it: a supervised model trained on it needs no keys."""
        self.path = Path(path)
        schema = EVENT_SCHEMA
        if sim_config is not None:
            schema = schema.with_metadata({LOG_CONFIG_KEY: json.dumps(sim_config.to_dict())})
        self.n_events = 0
        self._users: list[pa.Table] = []
        self._committed = False
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        os.close(fd)
        self._tmp = Path(tmp)
        self._writer: pq.ParquetWriter | None = None
        try:
            # mkstemp makes the file 0600; give the log the permissions a plain open() would (0666 - umask)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(self._tmp, 0o666 & ~umask)
            self._writer = pq.ParquetWriter(self._tmp, schema)
        except BaseException:
            self._tmp.unlink(missing_ok=True)
            raise

    def write(self, table: pa.Table) -> None:
        """Append a table of :data:`EVENT_SCHEMA` (e.g. one batch of users)."""
        if self._writer is None:
            raise ValueError(f"events file {self.path} is already closed")
        self._writer.write_table(table)
        self.n_events += table.num_rows

    def write_users(self, table: pa.Table) -> None:
        """Append rows of the users table (:data:`USER_SCHEMA`; e.g. ``EventRecorder.users_table()``
        of one batch of users), written beside the log on ``close``."""
        if self._writer is None:
            raise ValueError(f"events file {self.path} is already closed")
        if not table.schema.equals(USER_SCHEMA, check_metadata=False):
            raise ValueError(f"users table must have the schema {USER_SCHEMA}, got {table.schema}")
        self._users.append(table)

    def close(self) -> None:
        """Finish the file (and its users table) and move them to their final names."""
        if self._writer is None:
            return
        writer, self._writer = self._writer, None
        writer.close()
        side = users_path(self.path)
        side_tmp = None
        try:
            if self._users:
                users = pa.concat_tables(self._users)
                fd, name = tempfile.mkstemp(prefix=f".{side.name}.", suffix=".tmp", dir=side.parent)
                os.close(fd)
                side_tmp = Path(name)
                pq.write_table(users, side_tmp)
                os.chmod(side_tmp, os.stat(self._tmp).st_mode & 0o777)
            os.replace(self._tmp, self.path)
            self._committed = True
            if side_tmp is not None:
                os.replace(side_tmp, side)
                side_tmp = None
            else:
                side.unlink(missing_ok=True)
        finally:
            if side_tmp is not None:
                side_tmp.unlink(missing_ok=True)

    def abort(self) -> None:
        """Drop everything written; the destination is left as it was."""
        writer, self._writer = self._writer, None
        try:
            if writer is not None:
                writer.close()
        finally:
            if not self._committed:
                self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> EventWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            try:
                self.close()
            except BaseException:
                self.abort()
                raise
        else:
            self.abort()


def load_events(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read an events Parquet file into a DataFrame, checking it against :data:`EVENT_SCHEMA`.

    Extra columns are kept. Raises :class:`EventLogError` with a one-line message naming the file
    and the missing or mistyped column (or the first row with an unknown behaviour).
    """
    try:
        schema = pq.read_schema(path)
    except FileNotFoundError:
        raise EventLogError(f"events file {path}: no such file") from None
    except (OSError, pa.ArrowException) as err:
        raise EventLogError(f"events file {path}: not a readable Parquet file ({_one_line(err)})") from None
    for field in EVENT_SCHEMA:
        idx = schema.get_field_index(field.name)
        if idx < 0:
            raise EventLogError(f"events file {path}: missing column '{field.name}' ({field.type})")
        if not schema.field(idx).type.equals(field.type):
            raise EventLogError(f"events file {path}: column '{field.name}' must be {field.type}, "
                                f"got {schema.field(idx).type}")
    frame = pq.read_table(path).to_pandas()
    bad = ~frame["behaviour"].isin(BEHAVIOUR_NAMES)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise EventLogError(f"events file {path}: row {row} has behaviour {frame['behaviour'].iloc[row]!r}; "
                            f"expected one of {', '.join(BEHAVIOUR_NAMES)}")
    return frame


def load_users(events_path: str | os.PathLike[str]) -> pd.DataFrame | None:
    """The users table beside the events file ``events_path`` (:func:`users_path`) as a DataFrame of
    :data:`USER_SCHEMA`'s columns, or None when the log has none (its demographics are unknown).

    Raises :class:`EventLogError` (one line, naming the file) for a table that is unreadable, lacks
    or mistypes a column, repeats a user or holds a bucket out of range.
    """
    path = users_path(events_path)
    if not path.is_file():
        return None
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as err:
        raise EventLogError(f"users file {path}: not a readable Parquet file ({_one_line(err)})") from None
    for field in USER_SCHEMA:
        idx = table.schema.get_field_index(field.name)
        if idx < 0:
            raise EventLogError(f"users file {path}: missing column '{field.name}' ({field.type})")
        if not table.schema.field(idx).type.equals(field.type):
            raise EventLogError(f"users file {path}: column '{field.name}' must be {field.type}, "
                                f"got {table.schema.field(idx).type}")
    frame = table.select(USER_SCHEMA.names).to_pandas()
    if frame["user_id"].duplicated().any():
        row = int(np.flatnonzero(frame["user_id"].duplicated().to_numpy())[0])
        raise EventLogError(f"users file {path}: row {row} repeats user_id {frame['user_id'].iloc[row]}")
    for name, width in DEMOGRAPHICS:
        values = frame[name].to_numpy()
        bad = np.flatnonzero((values < -1) | (values >= width))
        if bad.size:
            raise EventLogError(f"users file {path}: row {bad[0]} has {name} {values[bad[0]]}; "
                                f"expected a bucket in [0, {width}) or -1 (unknown)")
    return frame


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())
