"""Loading real interaction logs (driftrec.ingest): validation messages, mappings, sessions, chunking,
Parquet input and the driftrec event-log round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from driftrec.envs.config import ConfigError, SimConfig
from driftrec.envs.events import EVENT_SCHEMA, load_events
from driftrec.envs.world import build_world
from driftrec.experiments.bench_load import generate
from driftrec.experiments.cli import main
from driftrec.ingest.format import DEFAULT_BEHAVIOURS, LogFormat
from driftrec.ingest.load import items_path, load_log, write_loaded
from driftrec.ingest.results import LoadedLog, LogLoadError

MESSY = Path(__file__).resolve().parents[1] / "data" / "messy_shop.csv"
HEADER = "user_id,item_id,timestamp,behaviour,price,category\n"


def write(tmp_path: Path, text: str, name: str = "log.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def where(row: int, column: str) -> str:
    return f"log file '{MESSY}', data row {row}, column '{column}'"


# every bad row of tests/data/messy_shop.csv (data rows count from 1 after the header) and its message
MESSY_ERRORS = [
    f"{where(3, 'user_id')}: empty user_id",
    f"{where(5, 'timestamp')}: unparseable timestamp 'yesterday'; expected ISO 8601 text such as "
    "2024-05-01T12:30:00Z (or set timestamp_format) or a number of seconds since 1970",
    f"{where(7, 'behaviour')}: unknown behaviour 'wishlist'; map it with behaviours.VALUE=BEHAVIOUR "
    "(one of search, view, impression, click, cart, purchase) or list it in drop",
    f"{where(8, 'price')}: negative price '-12.50'",
    f"{where(9, 'price')}: price 'twelve' is not a number",
    f"{where(10, 'item_id')}: empty item_id",
    f"log file '{MESSY}', data row 13 (line 14): malformed CSV row "
    "'dave,sku-1,2024-03-03T00:00:00Z,view,1.0,shoes,extra' (expected 6 fields, got 7)",
]


def check_schema(loaded: LoadedLog) -> None:
    """The contract of LoadedLog.events: EVENT_SCHEMA's columns and dtypes, sorted by (user, time)."""
    events = loaded.events
    assert list(events.columns) == EVENT_SCHEMA.names
    reference = EVENT_SCHEMA.empty_table().to_pandas()
    assert events.dtypes.to_dict() == reference.dtypes.to_dict()
    key = events[["user_id", "timestamp"]]
    assert key.equals(key.sort_values(["user_id", "timestamp"], kind="stable"))
    assert set(events["behaviour"]) <= {"search", "view", "impression", "click", "cart", "purchase"}


# ------------------------------------------------------------------------------------- messy CSV
def test_each_bad_row_of_the_messy_csv_has_its_one_line_message() -> None:
    with pytest.raises(LogLoadError) as err:
        load_log(MESSY)
    assert str(err.value) == MESSY_ERRORS[0]
    assert err.value.row == 3
    assert isinstance(err.value, ValueError) and isinstance(err.value, ConfigError)

    loaded = load_log(MESSY, skip_bad_rows=True)
    assert loaded.report.first_errors == MESSY_ERRORS
    assert all("\n" not in message for message in loaded.report.first_errors)


def test_each_bad_row_stops_a_strict_load_in_file_order(tmp_path: Path) -> None:
    # drop the bad rows one by one from the top: the next one is then the error
    lines = MESSY.read_text().splitlines(keepends=True)
    bad_rows = [3, 5, 7, 8, 9, 10, 13]
    for k, row in enumerate(bad_rows):
        kept = [line for i, line in enumerate(lines) if i == 0 or i not in bad_rows[:k]]
        path = write(tmp_path, "".join(kept), f"cut{k}.csv")
        with pytest.raises(LogLoadError) as err:
            load_log(path)
        expected = MESSY_ERRORS[k].replace(str(MESSY), str(path))
        # rows above it were removed: its data row number drops by that many
        expected = expected.replace(f"data row {row}", f"data row {row - k}").replace(f"line {row + 1}",
                                                                                       f"line {row + 1 - k}")
        assert str(err.value) == expected


def test_skip_bad_rows_counts_each_reason_and_keeps_the_good_rows() -> None:
    loaded = load_log(MESSY, skip_bad_rows=True)
    report = loaded.report
    assert report.rows_read == 14
    assert report.skipped == {"malformed row": 1, "empty user_id": 1, "empty item_id": 1, "bad timestamp": 1,
                              "unknown behaviour": 1, "negative price": 1, "non-numeric price": 1}
    assert report.rows_kept == 7 == len(loaded.events) == report.rows_read - report.rows_skipped
    assert report.behaviours == {"search": 1, "view": 2, "click": 1, "cart": 1, "purchase": 2}
    check_schema(loaded)
    ev = loaded.events
    # users and items are dense in order of first appearance; originals are kept
    assert list(loaded.users) == ["alice", "bob", "carol", "dave"]
    assert loaded.items["original"].tolist() == ["sku-1", "sku-2"]
    assert loaded.categories == ["shoes", "hats"] and loaded.n_categories == 2
    assert loaded.items["category"].tolist() == [0, 1]
    assert loaded.items["price"].tolist() == pytest.approx([19.99, 5.0])
    # aliases and case: addtocart -> cart, transaction and 'Purchase' -> purchase, 'VIEW' -> view
    alice = ev[ev["user_id"] == 0]
    assert alice["behaviour"].tolist() == ["view", "cart", "purchase"]
    # a search may have no item (-1); a row without price or category gets its item's
    carol = ev[ev["user_id"] == 2]
    assert carol["item_id"].tolist() == [-1, 1]
    assert carol["category"].tolist() == [1, 1]
    assert np.isnan(carol["price"].iloc[0]) and carol["price"].iloc[1] == pytest.approx(5.0)
    # numeric timestamp (seconds) and an ISO time; rewards use the default SimConfig weights
    bob = ev[ev["user_id"] == 1]
    assert bob["timestamp"].tolist() == [pd.Timestamp(1709290000, unit="s")]
    cfg = SimConfig()
    assert bob["reward"].tolist() == [cfg.reward_click]
    assert ev.loc[ev["behaviour"] == "purchase", "reward"].tolist() == [cfg.reward_purchase] * 2
    assert (ev["position"] == -1).all() and ev["propensity"].isna().all()
    assert not loaded.has_impressions and loaded.sim_config is None


def test_missing_columns_are_named_with_the_file_and_its_columns(tmp_path: Path) -> None:
    path = write(tmp_path, "user_id,item_id,timestamp\nu,i,2024-01-01\n")
    with pytest.raises(LogLoadError, match=r"^log file '.*log\.csv': missing column 'behaviour' \(set "
                                           r"columns\.behaviour=NAME .*\); the file has columns: user_id, "
                                           r"item_id, timestamp$"):
        load_log(path)
    fmt = LogFormat.from_dict({"columns": {"timestamp": "ts"}})
    with pytest.raises(LogLoadError, match=r"missing column 'ts' \(columns\.timestamp names it\)"):
        load_log(MESSY, fmt)


@pytest.mark.parametrize("text, message", [
    ("u,i,2024-13-45,view,1,c\n", "unparseable timestamp '2024-13-45'"),
    ("u,i,,view,1,c\n", "unparseable timestamp ''"),
    ("u,i,2024-01-01,,1,c\n", "unknown behaviour ''"),
    ("u,i,2024-01-01,view,1e999x,c\n", "price '1e999x' is not a number"),
    ("u,i,2024-01-01,view,inf,c\n", "price 'inf' is not a number"),
    ("  ,i,2024-01-01,view,1,c\n", "empty user_id"),
])
def test_more_bad_values(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, HEADER + "u,i,2024-01-01,view,1,c\n" + text)
    with pytest.raises(LogLoadError) as err:
        load_log(path)
    assert "data row 2, column" in str(err.value) and message in str(err.value)


def test_file_level_errors(tmp_path: Path) -> None:
    with pytest.raises(LogLoadError, match="does not exist"):
        load_log(tmp_path / "nope.csv")
    with pytest.raises(LogLoadError, match="is a folder"):
        load_log(tmp_path)
    with pytest.raises(LogLoadError, match="is empty"):
        load_log(write(tmp_path, ""))
    with pytest.raises(LogLoadError, match="has no events to keep"):
        load_log(write(tmp_path, HEADER))
    with pytest.raises(LogLoadError, match="not a readable Parquet file"):
        load_log(write(tmp_path, "not parquet", "bad.parquet"))


# ------------------------------------------------------------------------------------- formats
def test_ratings_log_maps_high_ratings_to_purchases(tmp_path: Path) -> None:
    path = write(tmp_path, "userId,movieId,rating,timestamp\n1,10,4.0,964982703\n1,20,3.5,964982224\n"
                           "2,10,5,964982931\n2,30,1.0,964983000\n")
    fmt = LogFormat.from_dict({"columns": {"user_id": "userId", "item_id": "movieId", "behaviour": "rating"},
                               "rating_threshold": 4})
    loaded = load_log(path, fmt)
    ev = loaded.events
    assert ev["behaviour"].tolist() == ["view", "purchase", "purchase", "view"]  # user 1 sorted by time
    assert loaded.items["original"].tolist() == ["10", "20", "30"]
    dropped = load_log(path, LogFormat.from_dict({"rating_below": "drop"}, base=fmt))
    assert dropped.events["behaviour"].tolist() == ["purchase", "purchase"]
    assert dropped.report.dropped == {"rating < 4": 2} and dropped.report.rows_kept == 2
    bad = write(tmp_path, "userId,movieId,rating,timestamp\n1,10,great,964982703\n", "bad.csv")
    with pytest.raises(LogLoadError, match=r"data row 1, column 'rating': rating 'great' is not a number"):
        load_log(bad, fmt)


def test_retailrocket_style_log_with_renames_ms_timestamps_and_drop(tmp_path: Path) -> None:
    path = write(tmp_path, "timestamp,visitorid,event,itemid,transactionid\n"
                           "1433221332117,257597,view,355908,\n1433224214164,992329,view,248676,\n"
                           "1433221999827,257597,addtocart,355908,\n1433222276276,257597,transaction,355908,4000\n"
                           "1433223000000,257597,wishlist,1,\n")
    fmt = LogFormat.from_dict({"columns.user_id": "visitorid", "columns.item_id": "itemid",
                               "columns.behaviour": "event", "timestamp_unit": "ms", "drop": ["wishlist"]})
    loaded = load_log(path, fmt)
    ev = loaded.events
    assert ev["behaviour"].tolist() == ["view", "cart", "purchase", "view"]
    assert ev["timestamp"].iloc[0] == pd.Timestamp(1433221332117, unit="ms")
    assert list(loaded.users) == ["257597", "992329"] and loaded.n_items == 2
    assert loaded.report.dropped == {"wishlist": 1} and loaded.report.rows_read == 5
    assert loaded.n_categories == 1 and (ev["category"] == 0).all() and ev["price"].isna().all()


@pytest.mark.parametrize("unit, scale", [("s", 1), ("ms", 10**3), ("us", 10**6), ("ns", 10**9)])
def test_numeric_timestamps_in_every_unit(tmp_path: Path, unit: str, scale: int) -> None:
    seconds = [1_700_000_000, 1_700_000_090]
    path = write(tmp_path, HEADER + "".join(f"u,i,{s * scale},view,1,c\n" for s in seconds))
    ev = load_log(path, LogFormat.from_dict({"timestamp_unit": unit})).events
    assert ev["timestamp"].tolist() == [pd.Timestamp(s, unit="s") for s in seconds]


def test_text_timestamps_iso_offsets_fractions_and_a_custom_format(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + "u,i,2024-03-01T10:00:00+01:00,view,1,c\nu,i,2024-03-01 09:30:00.250,view,1,c\n"
                                    "u,i,2024/03/01 09:45:00,view,1,c\nu,i,1709287200.5,view,1,c\n")
    ev = load_log(path).events
    assert ev["timestamp"].tolist() == [pd.Timestamp("2024-03-01 09:00:00"), pd.Timestamp("2024-03-01 09:30:00.250"),
                                        pd.Timestamp("2024-03-01 09:45:00"), pd.Timestamp("2024-03-01 10:00:00.500")]
    custom = write(tmp_path, HEADER + "u,i,01/03/2024 09:00,view,1,c\n", "custom.csv")
    ev = load_log(custom, LogFormat.from_dict({"timestamp_format": "%d/%m/%Y %H:%M"})).events
    assert ev["timestamp"].tolist() == [pd.Timestamp("2024-03-01 09:00")]


def test_sessions_from_time_gaps_and_from_a_session_column(tmp_path: Path) -> None:
    minutes = [0, 20, 55, 56, 200]
    rows = "".join(f"u,i,{1_700_000_000 + 60 * m},view,1,c\n" for m in minutes) + "w,i,1700000000,view,1,c\n"
    path = write(tmp_path, HEADER + rows)
    assert load_log(path).events["session_id"].tolist() == [0, 0, 1, 1, 2, 0]  # default gap 30 minutes
    gap10 = load_log(path, LogFormat.from_dict({"session_gap_minutes": 10})).events
    assert gap10["session_id"].tolist() == [0, 1, 2, 2, 3, 0]
    # a session column: sessions numbered per user in order of their first event, whatever their ids
    path = write(tmp_path, "session,user_id,item_id,timestamp,behaviour\nS9,u,i,100,view\nS2,u,i,50,view\n"
                           "S9,u,i,300,view\nS2,w,i,10,view\nS7,u,i,200,view\n", "sessions.csv")
    ev = load_log(path, LogFormat.from_dict({"columns": {"session_id": "session"}})).events
    assert ev["user_id"].tolist() == [0, 0, 0, 0, 1]
    assert ev["session_id"].tolist() == [0, 1, 2, 1, 0]  # u: S2 (t=50), S9 (100, 300), S7 (200); w: S2


def test_equal_timestamps_keep_file_order_and_impressions_keep_positions(tmp_path: Path) -> None:
    path = write(tmp_path, "user_id,item_id,timestamp,behaviour,position\nu,a,5,impression,0\nu,b,5,impression,1\n"
                           "v,a,1,view,\nu,b,5,click,1\nu,b,5,cart,\n")
    loaded = load_log(path)
    ev = loaded.events
    assert ev["behaviour"].tolist() == ["impression", "impression", "click", "cart", "view"]
    assert ev["position"].tolist() == [0, 1, 1, -1, -1]
    assert loaded.has_impressions
    bad = write(tmp_path, "user_id,item_id,timestamp,behaviour,position\nu,a,5,impression,1.5\n", "bad.csv")
    with pytest.raises(LogLoadError, match=r"position '1.5' is not an integer in \[0, 32767\]"):
        load_log(bad)


def test_log_format_validation_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown log format key 'timestamp_units'; did you mean 'timestamp_unit'"):
        LogFormat.from_dict({"timestamp_units": "ms"})
    with pytest.raises(ConfigError, match=r"'timestamp_unit' must be one of s, ms, us, ns; got 'sec'"):
        LogFormat.from_dict({"timestamp_unit": "sec"})
    with pytest.raises(ConfigError, match=r"'behaviours.fav' must be one of search, .*, drop; got 'like'"):
        LogFormat.from_dict({"behaviours": {"fav": "like"}})
    with pytest.raises(ConfigError, match=r"'columns.usr': 'usr' is not a driftrec column"):
        LogFormat.from_dict({"columns": {"usr": "u"}})
    with pytest.raises(ConfigError, match=r"column 'x' is already columns.user_id"):
        LogFormat.from_dict({"columns": {"user_id": "x", "item_id": "x"}})
    with pytest.raises(ConfigError, match=r"did you mean 'columns.user_id'"):
        LogFormat.from_dict({"colums.user_id": "x"})
    with pytest.raises(ConfigError, match=r"'rating_threshold' must be a number or null"):
        LogFormat.from_dict({"rating_threshold": "high"})
    with pytest.raises(ConfigError, match=r"'session_gap_minutes' must be in \[0, 1e\+09\]"):
        LogFormat.from_dict({"session_gap_minutes": -1})
    with pytest.raises(ConfigError, match=r"'delimiter' must be one character"):
        LogFormat.from_dict({"delimiter": ";;"})
    # dotted keys add to a base's mapping; values are normalised; YAML holds a format
    fmt = LogFormat.from_dict({"behaviours.Fav ": "Cart"}, base=LogFormat.from_dict({"behaviours": {"like": "click"}}))
    assert fmt.behaviours == {"like": "click", "fav": "cart"}
    assert fmt.behaviour_map()["addtocart"] == "cart" and DEFAULT_BEHAVIOURS["transaction"] == "purchase"
    yml = write(tmp_path, "columns: {user_id: visitorid}\ndrop: [Wishlist]\nrating_threshold: null\n", "f.yaml")
    assert LogFormat.from_yaml(yml) == LogFormat(columns={"user_id": "visitorid"}, drop=("wishlist",))
    assert LogFormat.from_dict(LogFormat.from_yaml(yml).to_dict()) == LogFormat.from_yaml(yml)
    with pytest.raises(ConfigError, match=r"log format '.*nope.yaml' does not exist"):
        LogFormat.from_yaml(tmp_path / "nope.yaml")


def test_log_format_tables_are_replaced_whole_and_set_entry_by_entry() -> None:
    """columns and behaviours: a mapping given whole replaces the base's (the --format file's), a
    dotted key sets one entry over it whatever the order, and an entry's name may hold dots."""
    base = LogFormat.from_dict({"columns": {"user_id": "visitorid", "item_id": "itemid"},
                                "behaviours": {"like": "click"}})
    assert LogFormat.from_dict({"columns": {"timestamp": "ts"}}, base).columns == {"timestamp": "ts"}
    assert LogFormat.from_dict({"columns.timestamp": "ts"}, base).columns == {
        "user_id": "visitorid", "item_id": "itemid", "timestamp": "ts"}
    for values in ({"columns": {"timestamp": "ts"}, "columns.user_id": "uid"},
                   {"columns.user_id": "uid", "columns": {"timestamp": "ts"}}):
        assert LogFormat.from_dict(values, base).columns == {"timestamp": "ts", "user_id": "uid"}
    dotted = LogFormat.from_dict({"behaviours.add.to.cart": "Cart"}, base)
    assert dotted.behaviours == {"like": "click", "add.to.cart": "cart"} and dotted.columns == base.columns
    assert LogFormat.from_dict(dotted.to_dict()) == dotted
    with pytest.raises(ConfigError, match=r"column 'itemid' is already columns.user_id"):
        LogFormat.from_dict({"columns.user_id": "itemid"}, base)  # checked against the base's entries
    rows = {key: (default, allowed) for key, default, allowed, _ in LogFormat.describe()}
    assert rows["columns"] == ("{}", "mapping") and rows["timestamp_unit"] == ("'s'", "s | ms | us | ns")


def test_semicolon_delimited_gzip_csv(tmp_path: Path) -> None:
    import gzip

    path = tmp_path / "log.csv.gz"
    with gzip.open(path, "wt") as handle:
        handle.write("user_id;item_id;timestamp;behaviour\nu;i;2024-01-01;buy\n")
    ev = load_log(path, LogFormat.from_dict({"delimiter": ";"})).events
    assert ev["behaviour"].tolist() == ["purchase"]


# ------------------------------------------------------------------------------------- chunks, Parquet
def test_any_chunk_size_gives_the_same_log(tmp_path: Path) -> None:
    path = generate(3_000, tmp_path)["iso.csv"]
    whole = load_log(path)
    for chunk in (7, 1000):  # chunk 1 is checked on the messy log below (3,000 chunks would be slow)
        part = load_log(path, chunk_rows=chunk)
        pd.testing.assert_frame_equal(part.events, whole.events)
        pd.testing.assert_frame_equal(part.items, whole.items)
        assert part.categories == whole.categories and list(part.users) == list(whole.users)
    assert whole.n_users == 300 and len(whole.events) == 3_000
    # with bad rows too: the same counts and messages
    one = load_log(MESSY, skip_bad_rows=True, chunk_rows=1)
    full = load_log(MESSY, skip_bad_rows=True)
    pd.testing.assert_frame_equal(one.events, full.events)
    assert one.report.skipped == full.report.skipped and one.report.first_errors == full.report.first_errors
    with pytest.raises(LogLoadError) as err:
        load_log(MESSY, chunk_rows=2)
    assert str(err.value) == MESSY_ERRORS[0]


def test_parquet_input_with_native_types_matches_the_csv(tmp_path: Path) -> None:
    paths = generate(2_000, tmp_path)
    from_csv = load_log(paths["iso.csv"])
    from_parquet = load_log(paths["log.parquet"], LogFormat.from_dict({"timestamp_unit": "ms"}), chunk_rows=300)
    from_epoch = load_log(paths["epoch.csv"])
    pd.testing.assert_frame_equal(from_parquet.events, from_csv.events)
    pd.testing.assert_frame_equal(from_epoch.events, from_csv.events)
    pd.testing.assert_frame_equal(from_parquet.items, from_csv.items)
    check_schema(from_parquet)
    # Parquet with integer ids, a timestamp column, float prices and a null user
    table = pa.table({"user_id": pa.array([7, 7, None, 3], pa.int64()), "item_id": pa.array([1, 2, 1, 1]),
                      "timestamp": pa.array([2000, 1000, 0, 500], pa.timestamp("ms", tz="UTC")),
                      "behaviour": ["view", "click", "view", "buy"], "price": [1.5, 2.0, 1.5, None]})
    pq.write_table(table, tmp_path / "typed.parquet")
    with pytest.raises(LogLoadError, match=r"data row 3, column 'user_id': empty user_id"):
        load_log(tmp_path / "typed.parquet")
    loaded = load_log(tmp_path / "typed.parquet", skip_bad_rows=True)
    assert loaded.events["item_id"].tolist() == [1, 0, 0]  # user 7 by time: item 2 (id 1), item 1 (id 0)
    assert list(loaded.users) == ["7", "3"] and loaded.items["original"].tolist() == ["1", "2"]
    assert loaded.events["price"].tolist() == pytest.approx([2.0, 1.5, 1.5])  # the null price: item 1's median


# ------------------------------------------------------------------------------------- event logs
@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sim") / "sim.parquet"
    assert main(["simulate", "--users", "6", "--days", "2", "--seed", "3", "--policy", "random",
                 "--set", "n_items=40", "--out", str(out)]) == 0
    return out


def test_a_simulated_log_loads_as_is(simulated: Path) -> None:
    loaded = load_log(simulated)
    pd.testing.assert_frame_equal(loaded.events, load_events(simulated))
    cfg = loaded.sim_config
    assert cfg is not None and cfg.n_items == 40 and loaded.n_items == 40 and loaded.n_categories == cfg.n_categories
    world = build_world(cfg)
    assert loaded.items["category"].tolist() == world.category.tolist()
    assert loaded.items["price"].to_numpy() == pytest.approx(world.price)
    assert loaded.has_impressions and loaded.n_users == 6
    check_schema(loaded)


def test_written_logs_round_trip_with_their_items(simulated: Path, tmp_path: Path) -> None:
    sim = load_log(simulated)
    events_path, side = write_loaded(sim, tmp_path / "copy.parquet")
    assert side == items_path(events_path) == tmp_path / "copy.items.parquet"
    again = load_log(events_path)
    pd.testing.assert_frame_equal(again.events, sim.events)
    assert again.sim_config == sim.sim_config
    # a real log: written, then loaded back through its items sidecar (original ids kept)
    real = load_log(MESSY, skip_bad_rows=True)
    write_loaded(real, tmp_path / "real.parquet", batch_rows=2)
    back = load_log(tmp_path / "real.parquet")
    pd.testing.assert_frame_equal(back.events, real.events)
    pd.testing.assert_frame_equal(back.items, real.items)
    assert back.sim_config is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.items.parquet", "copy.parquet",
                                                          "real.items.parquet", "real.parquet"]


def test_a_failed_write_leaves_nothing(tmp_path: Path) -> None:
    real = load_log(MESSY, skip_bad_rows=True)
    broken = LoadedLog(**{**real.__dict__, "events": real.events.assign(price="x")})
    with pytest.raises((pa.ArrowException, ValueError, TypeError)):
        write_loaded(broken, tmp_path / "out.parquet")
    assert list(tmp_path.iterdir()) == []
