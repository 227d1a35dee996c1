"""Plan and pipeline files held to the limits: depth, size, duplicate keys, BOMs, odd scalars."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import stagedretry as sr
from stagedretry._documents import MAX_DOCUMENT_BYTES, load_document
from stagedretry._limits import MAX_DEPTH

LADDER_YAML = """\
max_prompts: 4
stages:
  - name: full_t0
    params:
      temperature: 0.0
  - name: partial_t0
    kind: partial
    params:
      temperature: 0.5
      temperature: 0.9
"""


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def refused(path: Path) -> str:
    with pytest.raises(sr.PlanError) as caught:
        sr.Plan.load(path)
    return str(caught.value)


def test_a_yaml_key_given_twice_is_refused_with_its_path_and_lines(tmp_path: Path) -> None:
    path = write(tmp_path, "plan.yaml", LADDER_YAML)
    assert refused(path) == (
        "plan.yaml: stages[1].params: duplicate key 'temperature' (line 10, first given on line 9)"
    )


def test_duplicate_keys_are_refused_in_flow_mappings_and_at_the_top(tmp_path: Path) -> None:
    flow = write(tmp_path, "flow.yaml", "plan: {max_prompts: 2, max_prompts: 3, stages: []}\n")
    assert refused(flow) == (
        "flow.yaml: plan: duplicate key 'max_prompts' (line 1, first given on line 1)"
    )
    top = write(tmp_path, "top.yml", "max_prompts: 2\nstages: []\nmax_prompts: 3\n")
    assert refused(top) == "top.yml: duplicate key 'max_prompts' (line 3, first given on line 1)"


def test_merge_keys_may_be_overridden_and_are_no_duplicates(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "merge.yaml",
        "defaults: &d {temperature: 0.0, top_p: 0.5}\n"
        "plan:\n"
        "  max_prompts: 3\n"
        "  stages:\n"
        "    - name: full_t0\n"
        "      params: {<<: *d, temperature: 0.7}\n",
    )
    data = load_document(path)
    assert data["plan"]["stages"][0]["params"] == {"temperature": 0.7, "top_p": 0.5}


@pytest.mark.parametrize("name", ["deep.yaml", "deep.toml"])
def test_a_file_nested_5000_deep_is_one_plan_error(tmp_path: Path, name: str) -> None:
    deep = "[" * 5000 + "]" * 5000
    text = f"plan:\n  max_prompts: 4\n  stages: {deep}\n"
    if name.endswith(".toml"):
        text = f"[plan]\nmax_prompts = 4\nstages = {deep}\n"
    message = refused(write(tmp_path, name, text))
    assert message.startswith(f"{name}: the document is nested more than {MAX_DEPTH} levels deep")
    assert "\n" not in message


@pytest.mark.parametrize(
    "text",
    [
        # Inline tables recurse in tomllib as arrays do; dotted headers build depth without it.
        "a = " + "{b = " * 3000 + "1" + "}" * 3000 + "\n",
        "[" + ".".join(f"k{i}" for i in range(MAX_DEPTH + 1)) + "]\nx = 1\n",
    ],
    ids=["inline-tables", "dotted-header"],
)
def test_deep_toml_of_every_shape_is_refused(tmp_path: Path, text: str) -> None:
    assert refused(write(tmp_path, "deep.toml", text)).startswith(
        "deep.toml: the document is nested more than"
    )


def test_block_style_yaml_nested_too_deep_names_the_line(tmp_path: Path) -> None:
    text = "".join(" " * i + f"k{i}:\n" for i in range(200)) + " " * 200 + "x: 1\n"
    message = refused(write(tmp_path, "deep.yaml", text))
    assert (
        message == f"deep.yaml: the document is nested more than {MAX_DEPTH} levels deep (line 65)"
    )


def test_a_yaml_alias_that_holds_itself_is_too_deep(tmp_path: Path) -> None:
    message = refused(write(tmp_path, "loop.yaml", "plan: &a\n  stages: [*a]\n"))
    assert message.startswith(f"loop.yaml: the document is nested more than {MAX_DEPTH} levels")
    assert "aliases followed" in message


def test_a_billion_laughs_is_too_large_and_never_built(tmp_path: Path) -> None:
    names = "abcdefghij"
    text = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]\n" for p, c in itertools.pairwise(names)
    )
    message = refused(write(tmp_path, "lol.yaml", text))
    assert (
        message == "lol.yaml: the document is too large: more than 100000 nodes, aliases followed"
    )


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("bigint.yaml", "max_prompts: 1" + "0" * 5000 + "\n", "not valid YAML: Exceeds the limit"),
        ("bigint.toml", "max_prompts = 1" + "0" * 5000 + "\n", "not valid TOML: Exceeds the limit"),
        ("date.yaml", "max_prompts: 2001-13-45\n", "not valid YAML: month must be in 1..12"),
        ("bytes.yaml", b"max_prompts: \xff\xfe\n", "not valid YAML: unacceptable character"),
        ("bytes.toml", b"max_prompts = '\xff'\n", "not UTF-8 text (byte 16)"),
        ("list.yaml", "- 1\n- 2\n", "expected a table, got a list"),
        ("keys.yaml", "1: 2\n", "keys must be strings, got 1"),
        ("broken.yaml", "plan:\n  a: [1, 2\n  b: 3\n", "not valid YAML: expected ',' or ']'"),
    ],
)
def test_odd_scalars_and_bytes_are_one_sentence(
    tmp_path: Path, name: str, content: str | bytes, expected: str
) -> None:
    message = refused(write(tmp_path, name, content))
    assert message.startswith(f"{name}: {expected}"), message
    assert "\n" not in message


def test_a_file_larger_than_the_limit_is_not_read(tmp_path: Path) -> None:
    path = write(tmp_path, "huge.toml", "# " + "x" * MAX_DOCUMENT_BYTES + "\n")
    assert refused(path) == (
        f"huge.toml: the file is larger than the limit of {MAX_DOCUMENT_BYTES} bytes"
    )


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("bom.toml", '[plan]\nmax_prompts = 3\n[[plan.stages]]\nname = "full_t0"\n'),
        ("bom.yaml", "plan:\n  max_prompts: 3\n  stages:\n    - name: full_t0\n"),
    ],
)
def test_a_utf8_byte_order_mark_is_skipped(tmp_path: Path, name: str, text: str) -> None:
    plan = sr.Plan.load(write(tmp_path, name, b"\xef\xbb\xbf" + text.encode()))
    assert plan.max_prompts == 3
    assert [s.name for s in plan.stages] == ["full_t0"]


@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    depth=st.integers(min_value=1, max_value=4000),
    suffix=st.sampled_from([".toml", ".yaml"]),
    opener=st.sampled_from(["[", "{"]),
)
def test_any_nesting_depth_loads_or_is_one_plan_error(
    tmp_path: Path, depth: int, suffix: str, opener: str
) -> None:
    if suffix == ".toml":
        inner = (
            "[" * depth + "1" + "]" * depth
            if opener == "["
            else "{a = " * depth + "1" + "}" * depth
        )
        text = f"x = {inner}\n"
    else:
        inner = (
            "[" * depth + "1" + "]" * depth if opener == "[" else "{a: " * depth + "1" + "}" * depth
        )
        text = f"x: {inner}\n"
    path = write(tmp_path, f"doc{suffix}", text)
    if depth + 1 > MAX_DEPTH:  # the top-level table is one level
        with pytest.raises(sr.PlanError, match="nested more than"):
            load_document(path)
    else:
        assert set(load_document(path)) == {"x"}
