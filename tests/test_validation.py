"""The one pydantic-error formatter: field names, allowed ranges, unknown keys."""

from __future__ import annotations

from typing import Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field

from forgetlab._validation import Float, Int, interval, validated


class _Inner(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rate: Float = Field(0.5, gt=0.0, lt=1.0)


class _Outer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    count: Int = Field(1, ge=1, le=1_000_000)
    share: Float = Field(0.0, ge=0.0, lt=0.5)
    limit: Int | None = Field(None, gt=2)
    mode: Literal["a", "b"] = "a"
    mean: list[Float] | None = None
    inner: _Inner = Field(default_factory=_Inner)
    items: list[_Inner] = Field(default_factory=list)


@pytest.mark.parametrize(("data", "message"), [
    ({"count": 0}, "thing field 'count': Input should be greater than or equal to 1 "
                   "(allowed: an integer in [1, 1000000])"),
    ({"count": True}, "thing field 'count': Input should be a number, not the boolean true "
                      "(allowed: an integer in [1, 1000000])"),
    ({"share": 0.5}, "thing field 'share': Input should be less than 0.5 "
                     "(allowed: a number in [0, 0.5))"),
    ({"limit": 1}, "thing field 'limit': Input should be greater than 2 "
                   "(allowed: an integer > 2)"),
    ({"mode": "c"}, "thing field 'mode': Input should be 'a' or 'b' (allowed: one of 'a', 'b')"),
    ({"mean": [0.0, "x"]}, "thing field 'mean': Input should be a valid number, unable to "
                           "parse string as a number"),
    ({"inner": {"rate": 1.0}}, "thing field 'inner.rate': Input should be less than 1 "
                               "(allowed: a number in (0, 1))"),
    ({"items": [{}, {"rate": 0}]}, "thing field 'items.1.rate': Input should be greater than 0 "
                                   "(allowed: a number in (0, 1))"),
    ({"colour": 1}, "unknown thing key 'colour' (allowed keys: count, share, limit, mode, mean, "
                    "inner, items)"),
    ({"inner": {"colour": 1}}, "unknown thing key 'inner.colour' (allowed keys: rate)"),
])
def test_errors_are_one_line_naming_the_field_and_its_range(data, message) -> None:
    with pytest.raises(ValueError) as err:
        validated(_Outer, data, noun="thing")
    assert str(err.value) == message


def test_a_prefix_and_a_given_range_take_part_in_the_message() -> None:
    with pytest.raises(ValueError) as err:
        validated(_Inner, {"rate": 2}, noun="sweep", prefix="axes.x",
                  allowed={"axes.x.rate": "a rate"})
    assert str(err.value) == "sweep field 'axes.x.rate': Input should be less than 1 " \
                             "(allowed: a rate)"


def test_intervals_write_their_ends() -> None:
    assert interval(0, 1, open_high=True) == "[0, 1)"
    assert interval(1e-6, None, open_low=True) == "(1e-06, inf)"
    assert interval(None, 1e6) == "(-inf, 1000000]"
