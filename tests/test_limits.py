"""The limits on outside data: JSON depth measured without parsing, strict JSON, walked depth."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stagedretry._limits import MAX_DEPTH, TooDeep, check_depth, check_json_depth, loads


def nested(depth: int, *, opener: str = "[", leaf: str = "0") -> str:
    """``depth`` arrays (or objects keyed ``"k"``) around *leaf*."""
    if opener == "[":
        return "[" * depth + leaf + "]" * depth
    return '{"k": ' * depth + leaf + "}" * depth


def depth_of(value: object) -> int:
    """The reference: arrays and objects around the deepest leaf (a scalar is 0)."""
    if isinstance(value, dict):
        return 1 + max((depth_of(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth_of(v) for v in value), default=0)
    return 0


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab', max_size=6),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(alphabet='[]{}"\\k', max_size=4), inner, max_size=3)
    ),
    max_leaves=40,
)


@pytest.mark.parametrize("opener", ["[", "{"])
def test_the_limit_itself_passes_and_one_more_level_is_refused(opener: str) -> None:
    check_json_depth(nested(MAX_DEPTH, opener=opener))
    assert depth_of(loads(nested(MAX_DEPTH, opener=opener))) == MAX_DEPTH
    with pytest.raises(TooDeep, match=f"nested more than {MAX_DEPTH} levels deep"):
        check_json_depth(nested(MAX_DEPTH + 1, opener=opener))


def test_a_hundred_thousand_levels_are_refused_quickly_and_never_recurse() -> None:
    deep = nested(100_000)
    with pytest.raises(TooDeep):
        check_json_depth(deep)
    with pytest.raises(TooDeep):
        check_json_depth(deep.encode())
    with pytest.raises(TooDeep):
        loads(deep)


def test_brackets_inside_strings_do_not_count() -> None:
    text = json.dumps({"a": "[" * 1000 + '\\" {{{{', "b": ["]" * 50]})
    check_json_depth(text)
    check_json_depth(text.encode())
    assert loads(text)["b"] == ["]" * 50]


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_not_json(constant: str) -> None:
    with pytest.raises(ValueError, match="is not a JSON number"):
        loads(f'{{"x": {constant}}}')


def test_check_depth_walks_with_a_stack_and_refuses_cycles_and_bombs() -> None:
    check_depth({"a": [1, {"b": ()}]}, 4)
    with pytest.raises(TooDeep):
        check_depth({"a": [1, {"b": ()}]}, 3)
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(TooDeep):
        check_depth(loop)
    # Ten levels of ten references to one list: 10**10 visits if followed naively.
    shared: list[Any] = [1]
    for _ in range(10):
        shared = [shared] * 10
    with pytest.raises(ValueError, match="too large"):
        check_depth(shared, max_nodes=10_000)


@given(json_values)
def test_the_scan_agrees_with_the_parsed_depth(value: object) -> None:
    text = json.dumps(value)
    depth = depth_of(value)
    for limit in (0, 1, 2, 3):
        refused = depth > limit
        for check in (check_json_depth, check_depth):
            subject = text if check is check_json_depth else value
            if refused:
                with pytest.raises(TooDeep):
                    check(subject, limit)
            else:
                check(subject, limit)
    assert loads(text) == value


@given(st.integers(min_value=0, max_value=3000), st.sampled_from(["[", "{"]), st.booleans())
def test_loads_never_raises_anything_but_a_value_error(depth: int, opener: str, cut: bool) -> None:
    text = nested(depth, opener=opener)
    if cut:
        text = text[: len(text) // 2 + 1]
    try:
        value = loads(text)
    except ValueError:
        assert cut or depth > MAX_DEPTH
    else:
        assert depth_of(value) == depth <= MAX_DEPTH
        assert not (isinstance(value, float) and math.isnan(value))
