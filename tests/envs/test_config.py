"""The config base (driftrec.envs.config.Config) and the one ``--set`` grammar (parse_sets):
typed fields, ranges, did-you-mean, sections reached by dotted keys, round trips, describe."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from driftrec.envs.config import REQUIRED, Config, ConfigError, SimConfig, knob, nest, parse_sets


@dataclasses.dataclass(frozen=True)
class Inner(Config):
    """A section."""

    width: int = knob(8, "a width", 1, 64)
    cell: str = knob("gru", "a cell", choices=("gru", "lstm"))


@dataclasses.dataclass(frozen=True)
class Job(Config):
    """A job config with every kind of field."""

    label = "job"

    out: Path = knob(REQUIRED, "run folder")
    space: Path | str | None = knob(None, "a path given as text or not")
    name: str = knob("run", "free text")
    seed: int = knob(0, "a seed", 0)
    rate: float = knob(0.5, "a share", 0.0, 1.0)
    fast: bool = knob(False, "a switch")
    limit: int | None = knob(None, "None: no limit", 1)
    names: tuple[str, ...] = knob(("a", "b"), "names, each once", distinct=True)
    sizes: tuple[int, ...] = knob((1, 2), "sizes", 1, 100)
    inner: Inner = knob(Inner(), "a section")
    extra: Mapping[str, Any] = knob({}, "free overrides")

    def check(self) -> None:
        if self.fast and self.rate > 0.9:
            raise ConfigError("config key 'rate' must be <= 0.9 when fast")


def _error(values: Mapping[str, Any], base: Job | None = None) -> str:
    with pytest.raises(ConfigError) as err:
        Job.from_dict(values, base)
    message = str(err.value)
    assert "\n" not in message
    return message


def test_fields_are_coerced_to_their_types() -> None:
    job = Job.from_dict({"out": "runs/x", "seed": "3", "rate": 0, "fast": "yes", "limit": 5, "names": "p, q,",
                         "sizes": [4, "5"], "name": 2024})
    assert job.out == Path("runs/x") and job.seed == 3 and isinstance(job.rate, float) and job.fast is True
    assert job.limit == 5 and job.names == ("p", "q") and job.sizes == (4, 5) and job.name == "2024"
    assert Job.from_dict({"limit": None}, job).limit is None
    assert Job.from_dict({"space": "s.yml"}, job).space == Path("s.yml")


@pytest.mark.parametrize(("values", "message"), [
    ({"sed": 1}, "unknown job key 'sed'; did you mean 'seed'?"),
    ({"inner.widht": 3}, "unknown config key 'inner.widht'; did you mean 'inner.width'?"),
    ({"iner.width": 3}, "unknown job key 'iner.width'; did you mean 'inner.width'?"),
    ({"seed.x": 1}, "config key 'seed.x': only inner, extra take dotted keys"),
    ({"job.seed": 1}, "unknown job key 'job.seed'; did you mean 'seed'?"),
    ({"rate": 1.5}, "config key 'rate' must be in [0, 1], got 1.5"),
    ({"seed": -1}, "config key 'seed' must be >= 0, got -1"),
    ({"limit": 0}, "config key 'limit' must be >= 1, got 0"),
    ({"inner.width": 99}, "config key 'inner.width' must be in [1, 64], got 99"),
    ({"inner": {"cell": "rnn"}}, "config key 'inner.cell' must be one of gru, lstm; got 'rnn'"),
    ({"seed": 2.5}, "config key 'seed' must be an integer, got 2.5"),
    ({"rate": "half"}, "config key 'rate' must be a number, got 'half'"),
    ({"rate": float("nan")}, "config key 'rate' must be a number, got nan"),
    ({"fast": 3}, "config key 'fast' must be true or false, got 3"),
    ({"name": ["x"]}, "config key 'name' must be text, got ['x']"),
    ({"out": ""}, "config key 'out' must be a path, got ''"),
    ({"names": "a,a"}, "config key 'names' must list at least one name, each once; got ['a', 'a']"),
    ({"names": 3}, "config key 'names' must be a list of names, got 3"),
    ({"sizes": [0]}, "config key 'sizes' must be in [1, 100], got 0"),
    ({"extra": 5}, "config key 'extra' must be a mapping, got 5"),
    ({"inner": 5}, "config key 'inner' must be a mapping, got 5"),
    ({"fast": True, "rate": 1.0}, "config key 'rate' must be <= 0.9 when fast"),
])
def test_each_mistake_is_one_line_naming_the_key(values: dict[str, Any], message: str) -> None:
    assert _error({"out": "o", **values}) == message


def test_a_required_key_must_be_given() -> None:
    assert _error({}) == "config key 'out' is required"
    assert Job.from_dict({}, Job(out=Path("o"))).out == Path("o")  # the base gives it


def test_dotted_and_nested_keys_merge_into_the_base() -> None:
    base = Job.from_dict({"out": "o", "inner": {"width": 4}, "extra": {"ppo": {"gamma": 0.9, "n_steps": 8}}})
    dotted = Job.from_dict({"inner.cell": "lstm", "extra.ppo.gamma": 0.5, "extra.dqn.lr": 1}, base)
    nested = Job.from_dict({"inner": {"cell": "lstm"}, "extra": {"ppo": {"gamma": 0.5}, "dqn": {"lr": 1}}}, base)
    assert dotted == nested
    assert dotted.inner == Inner(width=4, cell="lstm")  # the base's other keys stay
    assert dotted.extra == {"ppo": {"gamma": 0.5, "n_steps": 8}, "dqn": {"lr": 1}}


@dataclasses.dataclass(frozen=True)
class Renames(Config):
    """A config whose table is replaced, not merged, and whose names are checked by a function."""

    table: Mapping[str, str] = knob({}, "plain keys (they may hold dots) -> names", merge=False)
    name: str = knob("a", "a lower-case name", parse=lambda value: _lower_name(value))


def _lower_name(value: Any) -> str:
    if not isinstance(value, str) or not value.islower():
        raise ConfigError(f"name {value!r} must be lower-case text")
    return value


def test_a_merge_false_table_is_replaced_whole_and_set_entry_by_entry() -> None:
    base = Renames.from_dict({"table": {"a": "x", "b": "y"}})
    assert Renames.from_dict({"table": {"c": "z"}}, base).table == {"c": "z"}  # replaced, not merged
    assert Renames.from_dict({"table.c.d": "z"}, base).table == {"a": "x", "b": "y", "c.d": "z"}  # one entry
    for values in ({"table": {"c": "z"}, "table.a": "w"}, {"table.a": "w", "table": {"c": "z"}}):
        assert Renames.from_dict(values, base).table == {"c": "z", "a": "w"}  # entries over the whole, any order
    assert Renames.from_dict({"table.a": "w"}).table == {"a": "w"}
    with pytest.raises(ConfigError, match=r"^config key 'table' must be a mapping, got 5$"):
        Renames.from_dict({"table": 5, "table.a": "w"})


def test_parse_replaces_the_type_check() -> None:
    assert Renames.from_dict({"name": "ok"}).name == "ok"
    for bad in ("Caps", 3):
        with pytest.raises(ConfigError, match=r"^name .* must be lower-case text$"):
            Renames.from_dict({"name": bad})


def test_to_dict_round_trips() -> None:
    job = Job.from_dict({"out": "o", "names": ["x"], "inner.width": 3, "extra": {"k": [1, 2]}, "limit": 7})
    plain = job.to_dict()
    assert plain["out"] == "o" and plain["names"] == ["x"] and plain["inner"] == {"width": 3, "cell": "gru"}
    assert Job.from_dict(plain) == job


def test_validate_checks_a_config_built_directly() -> None:
    Job(out="o").validate()  # type: ignore[arg-type]  # a path given as text is fine
    with pytest.raises(ConfigError, match="config key 'seed' must be >= 0"):
        Job(out=Path("o"), seed=-3).validate()


def test_describe_lists_every_key_sections_dotted() -> None:
    rows = {key: (default, allowed, doc) for key, default, allowed, doc in Job.describe()}
    assert list(rows) == ["out", "space", "name", "seed", "rate", "fast", "limit", "names", "sizes", "inner.width",
                          "inner.cell", "extra"]
    assert rows["out"] == ("required", "path", "run folder") and rows["space"][1] == "path | null"
    assert rows["rate"][1] == "[0, 1]" and rows["seed"][1] == ">= 0" and rows["limit"][1] == ">= 1 | null"
    assert rows["inner.cell"] == ("'gru'", "gru | lstm", "a cell") and rows["fast"][1] == "true | false"
    assert rows["sizes"][1] == "list of [1, 100]" and rows["extra"][:2] == ("{}", "mapping")
    assert [row[0] for row in SimConfig.describe()] == [f.name for f in dataclasses.fields(SimConfig)]


def test_parse_sets_is_the_one_grammar() -> None:
    assert parse_sets(["a=1", "b.c=x", "d={e: 2}", "f=[1, 2]", "a=3", "g="]) == {
        "b.c": "x", "d": {"e": 2}, "f": [1, 2], "a": 3, "g": ""}
    assert list(parse_sets(["a.b=1", "a={b: 2}", "a.b=3"])) == ["a", "a.b"]  # the last of a key wins, in order
    assert nest(parse_sets(["a.b=1", "a={c: 2}", "x.y.z=3"])) == {"a": {"b": 1, "c": 2}, "x": {"y": {"z": 3}}}
    for item, needle in (("oops", "expected KEY=VALUE"), ("=1", "expected KEY=VALUE"),
                         ("a=[1", "the value is not valid YAML")):
        with pytest.raises(ConfigError, match=needle):
            parse_sets([item])
    with pytest.raises(ConfigError, match="'a' is set to a value and a mapping at once"):
        nest({"a": 1, "a.b": 2})
