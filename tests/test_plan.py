"""The declared plan: the default ladder, loading, round trips and every config mistake."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import attrs
import pytest

import stagedretry as sr

PLANS = Path(__file__).parent / "plans"
BAD = PLANS / "bad"
LADDER_NAMES = ("full_t0", "partial_t0", "full_t25", "partial_t25")
KNOWN = "known: full_t0, partial_t0, full_t25, partial_t25"


def ladder_dict() -> dict[str, Any]:
    return sr.Plan.ladder().to_dict()


def changed(change: Any) -> dict[str, Any]:
    """The ladder as plain data, with *change* applied to a deep copy."""
    data = copy.deepcopy(ladder_dict())
    change(data)
    return data


class TestLadder:
    def test_is_exactly_the_declared_ladder(self) -> None:
        plan = sr.Plan.ladder()

        assert plan.max_prompts == 5
        assert [(s.name, s.kind, dict(s.params)) for s in plan.stages] == [
            ("full_t0", "full", {"temperature": 0.0}),
            ("partial_t0", "partial", {"temperature": 0.0}),
            ("full_t25", "full", {"temperature": 0.25}),
            ("partial_t25", "partial", {"temperature": 0.25}),
        ]
        assert all(s.on_invalid == "next" and s.on_transient == "retry" for s in plan.stages)
        assert all(s.max_attempts is None and s.timeout is None for s in plan.stages)
        assert plan.deadline is None
        assert plan.timeout is None
        assert plan.max_rate_limit_waits == 20
        assert plan.max_resource_lost == 2

    def test_budget_can_be_chosen(self) -> None:
        assert sr.Plan.ladder(max_prompts=9).max_prompts == 9

    def test_is_frozen_and_slotted(self) -> None:
        plan = sr.Plan.ladder()

        assert attrs.has(sr.Plan)
        assert "__dict__" not in dir(plan)
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            plan.max_prompts = 6  # type: ignore[misc]
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            plan.stages[0].name = "other"  # type: ignore[misc]
        with pytest.raises(TypeError):
            plan.stages[0].params["temperature"] = 1.0  # type: ignore[index]

    def test_stage_lookup(self) -> None:
        plan = sr.Plan.ladder()

        assert plan.stage("full_t25").param("temperature") == 0.25
        assert plan.stage("full_t25").param("model", "default") == "default"
        with pytest.raises(KeyError):
            plan.stage("nope")


class TestLoad:
    @pytest.mark.parametrize(
        "name", ["ladder.toml", "ladder_under_plan.toml", "ladder.yaml", "ladder_under_plan.yml"]
    )
    def test_ladder_files_equal_the_ladder(self, name: str) -> None:
        assert sr.Plan.load(PLANS / name) == sr.Plan.ladder()

    def test_accepts_a_str_path(self) -> None:
        assert sr.Plan.load(str(PLANS / "ladder.toml")) == sr.Plan.ladder()

    def test_every_option(self) -> None:
        plan = sr.Plan.load(PLANS / "everything.toml", kinds=("full", "partial", "critique"))

        assert plan.max_prompts == 7
        assert plan.deadline == 120.0
        assert plan.timeout == 30.0
        assert plan.max_rate_limit_waits == 4
        assert plan.max_resource_lost == 1
        assert plan.backoff == sr.Backoff(0.25, 8.0, 3.0)
        assert plan.rate_limit_backoff == sr.Backoff(1.0, 30.0, 2.0)
        draft, fix, second = plan.stages
        assert draft.max_attempts == 3
        assert draft.timeout == 10.5
        assert draft.backoff == sr.Backoff(1.0, 2.0, 2.0)
        assert dict(draft.params) == {
            "temperature": 0.0,
            "model": "flash",
            "stop": ("END", "STOP"),
            "json": True,
            "max_output_tokens": 512,
        }
        assert (draft.on_invalid, draft.on_transient) == ("fix", "retry")
        assert (draft.on_shed, draft.on_give_up) == ("second-opinion", "second-opinion")
        assert draft.expedite == sr.Expedite(30.0, "second-opinion")
        assert (fix.kind, fix.on_invalid, fix.on_transient) == (
            "partial",
            "second-opinion",
            "second-opinion",
        )
        assert (second.kind, second.on_invalid, second.on_transient) == (
            "critique",
            "fail",
            "exhaust",
        )

    def test_user_kinds_must_be_declared(self) -> None:
        with pytest.raises(sr.PlanError) as caught:
            sr.Plan.load(PLANS / "everything.toml")

        assert str(caught.value) == (
            "everything.toml: plan.stages[2].kind: unknown stage kind 'critique' "
            "(known: full, partial)"
        )


class TestRoundTrip:
    def test_ladder(self) -> None:
        plan = sr.Plan.ladder()

        assert sr.Plan.from_dict(plan.to_dict()) == plan

    def test_every_option(self) -> None:
        kinds = ("full", "partial", "critique")
        plan = sr.Plan.load(PLANS / "everything.toml", kinds=kinds)

        again = sr.Plan.from_dict(plan.to_dict(), kinds=kinds)

        assert again == plan
        assert again.to_dict() == plan.to_dict()

    def test_built_in_code(self) -> None:
        plan = sr.Plan(
            stages=[
                sr.Stage("a", params={"tags": ["x", "y"], "n": 3}, max_attempts=2),
                sr.Stage("b", "partial", on_invalid="fail", on_transient="a", timeout=4.0),
            ],
            max_prompts=3,
            deadline=9.5,
            backoff=sr.Backoff(1.0, 4.0, 1.5),
        )

        assert sr.Plan.from_dict(plan.to_dict()) == plan

    def test_to_dict_is_plain_data(self) -> None:
        data = sr.Plan.ladder().to_dict()

        def plain(value: object) -> bool:
            if isinstance(value, dict):
                return all(isinstance(k, str) and plain(v) for k, v in value.items())
            if isinstance(value, list):
                return all(plain(v) for v in value)
            return isinstance(value, str | int | float | bool)

        assert plain(data)


class TestMermaid:
    def test_ladder_diagram(self) -> None:
        text = sr.Plan.ladder().to_mermaid()
        lines = text.splitlines()

        assert text.endswith("\n")
        assert lines[0] == "stateDiagram-v2"
        assert lines[1] == "    [*] --> full_t0"
        for line in (
            "    full_t0 --> succeeded: succeed",
            "    full_t0 --> partial_t0: invalid, give_up",
            "    full_t0 --> full_t0: transient, rate_limited, resource_lost, shed",
            "    full_t0 --> failed: fatal, abort",
            "    full_t0 --> exhausted: exhaust",
            "    partial_t0 --> full_t25: invalid, give_up, skip",
            "    full_t25 --> partial_t25: invalid, give_up",
            "    partial_t25 --> exhausted: invalid, give_up, exhaust, skip",
            "    succeeded --> [*]",
            "    failed --> [*]",
            "    exhausted --> [*]",
        ):
            assert line in lines
        # A full stage is never skipped.
        assert not any(line.startswith("    full_") and "skip" in line for line in lines)

    def test_declared_targets_are_drawn(self) -> None:
        plan = sr.Plan(
            [
                sr.Stage("ask", on_invalid="fail", on_transient="fallback"),
                sr.Stage("fallback", on_invalid="ask"),
            ]
        )
        lines = plan.to_mermaid().splitlines()

        assert "    ask --> failed: fatal, abort" not in lines
        assert "    ask --> failed: invalid, fatal, give_up, abort" in lines
        assert "    ask --> fallback: transient" in lines
        assert "    fallback --> ask: invalid, give_up" in lines
        assert "    fallback --> fallback: transient, rate_limited, resource_lost, shed" in lines


# Each malformed file, and the exact error it must give (file name, path, problem).
BAD_FILES = [
    (
        "typo_target.toml",
        f"typo_target.toml: plan.stages[2].on.invalid: unknown stage 'ful_t25' ({KNOWN}; "
        "or next, fail, exhaust)",
    ),
    ("unknown_key.toml", "unknown_key.toml: plan.max_promts: unknown key (allowed: stages, "),
    ("stage_unknown_key.yaml", "stage_unknown_key.yaml: plan.stages[0].temperature: unknown key"),
    (
        "duplicate_names.toml",
        "duplicate_names.toml: plan.stages[2].name: duplicate stage name 'full_t0' "
        "(also stages[0])",
    ),
    (
        "unknown_kind.yaml",
        "unknown_kind.yaml: plan.stages[1].kind: unknown stage kind 'parital' "
        "(known: full, partial)",
    ),
    ("zero_budget.toml", "zero_budget.toml: plan.max_prompts: must be at least 1, got 0"),
    (
        "unreachable.yaml",
        "unreachable.yaml: plan.stages[1]: stage 'partial_t0' is unreachable from 'full_t0'",
    ),
    (
        "partial_first.toml",
        "partial_first.toml: plan.stages[0].kind: the first stage cannot be 'partial'",
    ),
    (
        "wrong_type.toml",
        "wrong_type.toml: plan.max_prompts: expected an integer, got the string 'five'",
    ),
    (
        "bad_backoff.toml",
        "bad_backoff.toml: plan.backoff.multiplier: expected a number in [1, 100], "
        "got the number 0.5",
    ),
    ("syntax.toml", "syntax.toml: not valid TOML: "),
    ("syntax.yaml", "syntax.yaml: not valid YAML: "),
    ("no_stages.toml", "no_stages.toml: plan.stages: missing (a plan needs at least one stage)"),
    ("reserved_name.yaml", "reserved_name.yaml: plan.stages[1].name: 'failed' is a reserved name"),
    (
        "bad_timeout.toml",
        "bad_timeout.toml: plan.stages[0].timeout: must be a positive number of seconds, got -3",
    ),
    ("beside_plan.toml", "beside_plan.toml: unknown top-level key(s) ['runner'] beside [plan]"),
    ("top_level_list.yaml", "top_level_list.yaml: expected a table, got a list"),
    ("plan.json", "plan.json: unknown file type '.json' (expected .toml, .yaml or .yml)"),
    (
        "nested_param.toml",
        "nested_param.toml: plan.stages[0].params.generation: expected a scalar or a list, "
        "got a table",
    ),
    (
        "stages_not_list.yaml",
        "stages_not_list.yaml: plan.stages: expected a list of stages, got a table",
    ),
]


@pytest.mark.parametrize(("name", "message"), BAD_FILES, ids=[n for n, _ in BAD_FILES])
def test_malformed_file_is_rejected_with_its_path(name: str, message: str) -> None:
    with pytest.raises(sr.PlanError) as caught:
        sr.Plan.load(BAD / name)

    assert str(caught.value).startswith(message)


def test_every_bad_file_is_covered() -> None:
    assert sorted(p.name for p in BAD.iterdir()) == sorted(n for n, _ in BAD_FILES)


def test_missing_file() -> None:
    missing = BAD / "no_such_plan.toml"

    with pytest.raises(sr.PlanError) as caught:
        sr.Plan.load(missing)

    assert str(caught.value).startswith(f"{missing}: cannot read the file")


def test_yaml_on_key_is_not_a_boolean() -> None:
    # YAML 1.1 reads a bare `on:` key as True; plans are read with YAML 1.2 booleans.
    plan = sr.Plan.load(PLANS / "on_key.yaml")

    assert plan.stages[0].on_invalid == "fail"
    assert plan.stages[0].on_transient == "repeat"
    assert dict(plan.stages[0].params) == {"json": True, "mode": "yes", "stream": False}


# Each malformed plan as plain data, and the error path and problem it must give.
BAD_DICTS = [
    (
        "typo target",
        lambda d: d["stages"][2]["on"].update(invalid="ful_t25"),
        f"plan.stages[2].on.invalid: unknown stage 'ful_t25' ({KNOWN}; or next, fail, exhaust)",
    ),
    (
        "typo transient target",
        lambda d: d["stages"][0]["on"].update(transient="retyr"),
        f"plan.stages[0].on.transient: unknown stage 'retyr' ({KNOWN}; "
        "or retry, next, fail, exhaust)",
    ),
    (
        "retry is no invalid target",
        lambda d: d["stages"][1]["on"].update(invalid="retry"),
        "plan.stages[1].on.invalid: unknown stage 'retry'",
    ),
    (
        "unknown key at the top",
        lambda d: d.update(max_prompt=3),
        "plan.max_prompt: unknown key",
    ),
    (
        "unknown key in a stage",
        lambda d: d["stages"][1].update(temperature=0.3),
        "plan.stages[1].temperature: unknown key (allowed: name, kind, params, on, "
        "max_attempts, timeout, backoff, expedite)",
    ),
    (
        "unknown outcome under on",
        lambda d: d["stages"][0]["on"].update(fatal="retry"),
        "plan.stages[0].on.fatal: unknown key (allowed: invalid, transient, shed, give_up)",
    ),
    (
        "duplicate name",
        lambda d: d["stages"][3].update(name="partial_t0"),
        "plan.stages[3].name: duplicate stage name 'partial_t0' (also stages[1])",
    ),
    (
        "unknown kind",
        lambda d: d["stages"][2].update(kind="ful"),
        "plan.stages[2].kind: unknown stage kind 'ful' (known: full, partial)",
    ),
    (
        "budget below one",
        lambda d: d.update(max_prompts=-2),
        "plan.max_prompts: must be at least 1, got -2",
    ),
    (
        "budget as a bool",
        lambda d: d.update(max_prompts=True),
        "plan.max_prompts: expected an integer, got the boolean true",
    ),
    (
        "budget as a float",
        lambda d: d.update(max_prompts=2.5),
        "plan.max_prompts: expected an integer, got the number 2.5",
    ),
    (
        "unreachable stage",
        lambda d: d["stages"][0]["on"].update(invalid="full_t25"),
        "plan.stages[1]: stage 'partial_t0' is unreachable from 'full_t0'",
    ),
    (
        "partial first",
        lambda d: d["stages"].pop(0),
        "plan.stages[0].kind: the first stage cannot be 'partial'",
    ),
    (
        "missing stages",
        lambda d: d.pop("stages"),
        "plan.stages: missing (a plan needs at least one stage)",
    ),
    (
        "empty stages",
        lambda d: d.update(stages=[]),
        "plan.stages: a plan needs at least one stage",
    ),
    (
        "stage is not a table",
        lambda d: d["stages"].__setitem__(1, "partial_t0"),
        "plan.stages[1]: expected a table, got the string 'partial_t0'",
    ),
    (
        "stage without a name",
        lambda d: d["stages"][2].pop("name"),
        "plan.stages[2].name: missing (every stage needs a unique name)",
    ),
    (
        "name with a space",
        lambda d: d["stages"][0].update(name="full t0"),
        "plan.stages[0].name: 'full t0' is not a valid name",
    ),
    (
        "name is a number",
        lambda d: d["stages"][0].update(name=7),
        "plan.stages[0].name: expected a string, got the number 7",
    ),
    (
        "reserved name",
        lambda d: d["stages"][3].update(name="exhausted"),
        "plan.stages[3].name: 'exhausted' is a reserved name",
    ),
    (
        "reserved target word as a name",
        lambda d: d["stages"][3].update(name="next"),
        "plan.stages[3].name: 'next' is a reserved name",
    ),
    (
        "negative backoff",
        lambda d: d.update(backoff={"initial": -1}),
        "plan.backoff.initial: must be a positive number of seconds, got -1",
    ),
    (
        "backoff max below initial",
        lambda d: d.update(rate_limit_backoff={"initial": 5, "max": 1}),
        "plan.rate_limit_backoff: max (1.0) is smaller than initial (5.0)",
    ),
    (
        "unknown backoff key",
        lambda d: d["stages"][0].update(backoff={"jitter": "full"}),
        "plan.stages[0].backoff.jitter: unknown key (allowed: initial, max, maximum, multiplier)",
    ),
    (
        "zero timeout",
        lambda d: d.update(timeout=0),
        "plan.timeout: must be a positive number of seconds, got 0",
    ),
    (
        "timeout as text",
        lambda d: d["stages"][1].update(timeout="30s"),
        "plan.stages[1].timeout: expected a number of seconds, got the string '30s'",
    ),
    (
        "infinite deadline",
        lambda d: d.update(deadline=float("inf")),
        "plan.deadline: must be a positive number of seconds, got inf",
    ),
    (
        "max_attempts zero",
        lambda d: d["stages"][0].update(max_attempts=0),
        "plan.stages[0].max_attempts: must be at least 1, got 0",
    ),
    (
        "negative rate limit cap",
        lambda d: d.update(max_rate_limit_waits=-1),
        "plan.max_rate_limit_waits: must be at least 0, got -1",
    ),
    (
        "nested list param",
        lambda d: d["stages"][0]["params"].update(stop=["a", ["b"]]),
        "plan.stages[0].params.stop[1]: expected a scalar, got a list",
    ),
    (
        "params not a table",
        lambda d: d["stages"][0].update(params=["temperature", 0]),
        "plan.stages[0].params: expected a table, got a list",
    ),
]


@pytest.mark.parametrize(
    ("change", "message"), [(c, m) for _, c, m in BAD_DICTS], ids=[n for n, _, _ in BAD_DICTS]
)
def test_malformed_dict_is_rejected_with_its_path(change: Any, message: str) -> None:
    with pytest.raises(sr.PlanError) as caught:
        sr.Plan.from_dict(changed(change))

    assert str(caught.value).startswith(message)
    assert caught.value.path == message.split(": ", 1)[0]


def test_plan_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match=r"^plan\.max_prompts: "):
        sr.Plan.from_dict(changed(lambda d: d.update(max_prompts=0)))


def test_not_a_table() -> None:
    with pytest.raises(sr.PlanError, match=r"^plan: expected a table, got a list$"):
        sr.Plan.from_dict([{"name": "a"}])  # type: ignore[arg-type]


def test_where_prefixes_the_path() -> None:
    with pytest.raises(sr.PlanError, match=r"^config\.jobs\[0\]\.plan\.max_prompts: "):
        sr.Plan.from_dict(changed(lambda d: d.update(max_prompts=0)), where="config.jobs[0].plan")


class TestBuiltInCode:
    """A plan built in code gets the same checks as a parsed one."""

    @pytest.mark.parametrize(
        ("build", "message"),
        [
            (lambda: sr.Plan([]), "plan.stages: a plan needs at least one stage"),
            (lambda: sr.Plan([sr.Stage("a")], max_prompts=0), "plan.max_prompts: must be"),
            (
                lambda: sr.Plan([sr.Stage("a"), sr.Stage("a")]),
                "plan.stages[1].name: duplicate stage name 'a'",
            ),
            (
                lambda: sr.Plan([sr.Stage("a", "partial")]),
                "plan.stages[0].kind: the first stage cannot be 'partial'",
            ),
            (
                lambda: sr.Plan([sr.Stage("a", on_invalid="b")]),
                "plan.stages[0].on.invalid: unknown stage 'b' (known: a; or next, fail, exhaust)",
            ),
            (
                lambda: sr.Plan([sr.Stage("a", timeout=-1)]),
                "plan.stages[0].timeout: must be a positive number of seconds, got -1",
            ),
            (
                lambda: sr.Plan([sr.Stage("a b")]),
                "plan.stages[0].name: 'a b' is not a valid name",
            ),
            (
                lambda: sr.Plan([sr.Stage("a")], backoff=sr.Backoff(initial=0)),
                "plan.backoff.initial: must be a positive number of seconds, got 0",
            ),
            (
                lambda: sr.Plan([sr.Stage("a", backoff=sr.Backoff(multiplier=0.5))]),
                "plan.stages[0].backoff.multiplier: expected a number in [1, 100], "
                "got the number 0.5",
            ),
            (
                lambda: sr.Plan([sr.Stage("a")], deadline=0.0),
                "plan.deadline: must be a positive number of seconds, got 0.0",
            ),
            (
                lambda: sr.Plan([sr.Stage("a")], max_resource_lost=-1),
                "plan.max_resource_lost: must be at least 0",
            ),
            (
                lambda: sr.Plan(["a"]),  # type: ignore[list-item]
                "plan.stages[0]: expected a Stage, got the string 'a'",
            ),
        ],
    )
    def test_rejected(self, build: Any, message: str) -> None:
        with pytest.raises(sr.PlanError) as caught:
            build()

        assert str(caught.value).startswith(message)

    def test_cycles_through_stages_are_allowed(self) -> None:
        # The budget bounds a loop; a plan may bounce between two stages on purpose.
        plan = sr.Plan(
            [sr.Stage("ask", on_invalid="repair"), sr.Stage("repair", "partial", on_invalid="ask")]
        )

        assert [s.name for s in plan.stages] == ["ask", "repair"]


class TestBackoff:
    def test_ceiling_grows_and_is_capped(self) -> None:
        backoff = sr.Backoff(initial=0.5, maximum=3.0, multiplier=2.0)

        assert [backoff.ceiling(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]

    def test_ceiling_does_not_overflow(self) -> None:
        assert sr.Backoff().ceiling(10_000) == 30.0
