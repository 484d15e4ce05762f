"""nonstop.records: the dataclass behaviour the sync start-up relies on, without dataclasses."""

from __future__ import annotations

import pickle

import pytest

from nonstop.records import FrozenRecordError, field, fields, mutable_record, record, replace


@record
class Point:
    x: int
    y: int = 0
    tags: list[str] = field(default_factory=list)


@mutable_record
class Counter:
    name: str
    n: int = 0


def test_fields_defaults_and_factories() -> None:
    p = Point(1)
    assert (p.x, p.y, p.tags) == (1, 0, [])
    assert Point(1).tags is not p.tags  # a fresh default each time
    assert Point(1, y=2) == Point(x=1, y=2, tags=[])
    assert fields(Point) == ("x", "y", "tags") == Point.__match_args__
    assert repr(Point(1, 2)) == "Point(x=1, y=2, tags=[])"


def test_bad_arguments_are_type_errors() -> None:
    with pytest.raises(TypeError, match="missing argument 'x'"):
        Point()  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unexpected argument 'z'"):
        Point(1, z=3)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="multiple values for argument 'x'"):
        Point(1, x=2)  # type: ignore[misc]
    with pytest.raises(TypeError, match="takes 3 arguments"):
        Point(1, 2, [], 4)  # type: ignore[call-arg]


def test_frozen_records_hash_and_refuse_assignment() -> None:
    a, b = Point(1, 2, ()), Point(1, 2, ())  # type: ignore[arg-type]
    assert a == b and hash(a) == hash(b) and a != Point(1, 3, ())  # type: ignore[arg-type]
    assert a != (1, 2, ())  # type: ignore[comparison-overlap]
    with pytest.raises(FrozenRecordError):
        a.x = 5  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del a.y
    assert pickle.loads(pickle.dumps(a)) == a


def test_mutable_records_assign_and_do_not_hash() -> None:
    c = Counter("a")
    c.n += 1
    assert c == Counter("a", 1)
    with pytest.raises(TypeError):
        hash(c)


def test_replace_makes_a_changed_copy() -> None:
    p = Point(1, 2)
    q = replace(p, y=5)
    assert (p.y, q.y, q.x) == (2, 5, 1)
    with pytest.raises(TypeError, match="no field 'z'"):
        replace(p, z=1)


def test_match_statement_by_position() -> None:
    match Point(3, 4):
        case Point(3, y):
            assert y == 4
        case _:
            pytest.fail("no match")
