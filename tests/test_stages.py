"""Stage kinds (full, partial, user-defined) and the per-item state they read."""

from __future__ import annotations

import json
from typing import Any

import pytest

import stagedretry as sr
from stagedretry import FieldError, FieldErrorKind, ValidationFailed
from stagedretry._stages import merge, repair_prompt, repairable_fields
from stagedretry.testing import VirtualClock
from strategies.callable import from_callable

STAGE = sr.Stage("fix", "partial", {"temperature": 0.0})
ITEM = sr.WorkItem("b1", "Describe the book.")


def state(
    errors: tuple[FieldError, ...] = (), partial: dict[str, Any] | None = None
) -> sr.ItemState:
    s = sr.ItemState(ITEM, "fix", 2, 0.0)
    s.errors = errors
    s.partial = partial
    return s


def strict(data_text: str) -> dict[str, Any]:
    """Title a string, year an integer, author.name a string."""
    data: dict[str, Any] = json.loads(data_text)
    errors = []
    if not isinstance(data.get("title"), str):
        errors.append(FieldError("title", "expected a string"))
    if not isinstance(data.get("year"), int):
        errors.append(FieldError("year", "expected an integer"))
    if not isinstance(data.get("author", {}).get("name"), str):
        errors.append(FieldError(("author", "name"), "expected a string"))
    if errors:
        heads = {e.path[0] for e in errors}
        raise ValidationFailed(errors, {k: v for k, v in data.items() if k not in heads})
    return data


class TestFull:
    def test_sends_the_item_prompt(self) -> None:
        request = sr.FullStage().build(ITEM, state(), sr.Stage("ask"))

        assert request.prompt == "Describe the book."
        assert request.fields is None
        assert request.kept is None
        assert request.item_id == "b1"

    def test_validates_the_whole_text(self) -> None:
        out = sr.FullStage().parse(sr.Response('{"a": 1}'), state(), json.loads)

        assert out == {"a": 1}

    @pytest.mark.parametrize(
        ("meta", "why"),
        [
            (None, "no text in the response"),
            (sr.ResponseMeta(finish_reason="MAX_TOKENS"), "(finish reason MAX_TOKENS)"),
            (sr.ResponseMeta(blocked=True, block_reason="SAFETY"), "(prompt blocked: SAFETY)"),
        ],
    )
    def test_no_text_is_invalid_and_says_why(self, meta: sr.ResponseMeta | None, why: str) -> None:
        with pytest.raises(ValidationFailed) as caught:
            sr.FullStage().parse(sr.Response(None, meta=meta), state(), json.loads)

        (error,) = caught.value.errors
        assert error.path == ()
        assert why in error.message
        assert caught.value.partial is None


class TestPartialBuild:
    def test_asks_only_the_failed_leaves(self) -> None:
        errors = (
            FieldError("year", "expected an integer"),
            FieldError(("author", "name"), "expected a string"),
            FieldError(("author", "born"), "bad date"),
        )
        kept = {"title": "Dune", "author": {"born": "1920", "alive": False}, "pages": 412}

        request = sr.PartialStage().build(ITEM, state(errors, kept), STAGE)

        assert request is not None
        assert request.fields == (("year",), ("author", "name"), ("author", "born"))
        assert request.kept == {"title": "Dune", "author": {"alive": False}, "pages": 412}
        assert request.prompt == repair_prompt(ITEM.prompt, errors, request.kept, request.fields)

    def test_prompt_lists_errors_kept_data_and_wanted_fields(self) -> None:
        errors = (FieldError("year", "expected an integer"),)

        text = repair_prompt("Describe.", errors, {"title": "Dune"}, (("year",),))

        assert text.startswith("Describe.\n\n")
        assert "- /year: expected an integer" in text
        assert '{"title": "Dune"}' in text
        assert text.endswith(
            "Answer with a JSON object holding only these fields: /year, "
            'shaped like {"year": "..."}.'
        )

    def test_prompt_shows_keys_with_dots_and_slashes_as_one_key(self) -> None:
        errors = (FieldError("price.usd", "not a number"), FieldError(("a/b", "~"), "bad"))

        text = repair_prompt("Describe.", errors, {}, (("price.usd",), ("a/b", "~")))

        assert "- /price.usd: not a number" in text
        assert "- /a~1b/~0: bad" in text
        assert 'shaped like {"price.usd": "...", "a/b": {"~": "..."}}' in text

    @pytest.mark.parametrize(
        ("errors", "partial"),
        [
            ((), {"title": "Dune"}),  # nothing failed
            ((FieldError("year", "bad"),), None),  # nothing could be read
            ((FieldError("", "not JSON"),), {}),  # the whole answer failed
            ((FieldError("year", "bad"), FieldError("", "and more")), {"a": 1}),
        ],
    )
    def test_nothing_to_repair_skips(
        self, errors: tuple[FieldError, ...], partial: dict[str, Any] | None
    ) -> None:
        assert sr.PartialStage().build(ITEM, state(errors, partial), STAGE) is None

    def test_repairable_fields_keeps_first_seen_order(self) -> None:
        errors = (FieldError(("b", "x"), ""), FieldError("a", ""), FieldError(("b", "y"), ""))

        assert repairable_fields(errors) == (("b", "x"), ("a",), ("b", "y"))

    def test_repairable_fields_cut_at_arrays_and_skip_forbidden_keys(self) -> None:
        errors = (
            FieldError(("authors", 2, "name"), ""),
            FieldError(("authors", 0), ""),
            FieldError(("meta", "x"), ""),
            FieldError("meta", ""),
            FieldError("confidence", "not allowed", kind=FieldErrorKind.FORBIDDEN),
        )

        # An array is re-asked whole; "meta" covers "meta/x"; a forbidden key is never asked.
        assert repairable_fields(errors) == (("authors",), ("meta",))


class TestPartialParse:
    def test_merges_by_path_and_revalidates_the_whole(self) -> None:
        s = state(
            (FieldError("year", "x"), FieldError(("author", "name"), "x")),
            {"title": "Dune", "author": {"born": 1920}},
        )

        out = sr.PartialStage().parse(
            sr.Response('{"year": 1965, "author": {"name": "Frank Herbert"}}'), s, strict
        )

        assert out == {
            "title": "Dune",
            "year": 1965,
            "author": {"born": 1920, "name": "Frank Herbert"},
        }

    def test_a_repair_cannot_overwrite_a_kept_field(self) -> None:
        s = state((FieldError("year", "x"),), {"title": "Dune", "author": {"name": "F. H."}})

        out = sr.PartialStage().parse(sr.Response('{"year": 1965, "title": null}'), s, strict)

        assert out == {"title": "Dune", "year": 1965, "author": {"name": "F. H."}}

    def test_a_repair_that_is_still_wrong_fails_with_the_kept_part(self) -> None:
        s = state((FieldError("year", "x"),), {"title": "Dune", "author": {"name": "F. H."}})

        with pytest.raises(ValidationFailed) as caught:
            sr.PartialStage().parse(sr.Response('{"year": "soon"}'), s, strict)

        assert [e.path for e in caught.value.errors] == [("year",)]
        assert caught.value.partial == {"title": "Dune", "author": {"name": "F. H."}}

    @pytest.mark.parametrize(
        ("response", "why"),
        [
            (sr.Response("not json"), "not JSON"),
            (sr.Response("[1, 2]"), "not a JSON object"),
            (sr.Response(None, meta=sr.ResponseMeta(finish_reason="MAX_TOKENS")), "MAX_TOKENS"),
        ],
    )
    def test_unreadable_repair_keeps_what_is_left_to_repair(
        self, response: sr.Response, why: str
    ) -> None:
        errors = (FieldError("year", "expected an integer"),)
        s = state(errors, {"title": "Dune"})

        with pytest.raises(ValidationFailed) as caught:
            sr.PartialStage().parse(response, s, strict)

        (error,) = caught.value.errors
        assert error.path == ("year",)
        assert error.message.startswith("expected an integer (the last repair was unreadable: ")
        assert why in error.message
        assert caught.value.partial == {"title": "Dune"}
        # So the next partial stage still has something to repair.
        s.errors, s.partial = caught.value.errors, caught.value.partial
        again = sr.PartialStage().build(ITEM, s, STAGE)
        assert again is not None
        assert again.fields == (("year",),)

    def test_notes_do_not_pile_up(self) -> None:
        s = state((FieldError("year", "expected an integer"),), {"title": "Dune"})
        for _ in range(3):
            with pytest.raises(ValidationFailed) as caught:
                sr.PartialStage().parse(sr.Response("nope"), s, strict)
            s.errors = caught.value.errors

        assert s.errors[0].message.count("the last repair was unreadable") == 1


class TestMerge:
    def test_only_the_asked_paths_are_taken(self) -> None:
        kept = {"a": {"x": 1, "y": {"z": 2}}, "b": [1, 2], "c": "keep"}
        answer = {"a": {"y": {"w": 3}, "x": 9}, "b": [3], "c": "rewritten", "d": None}

        assert merge(kept, answer, [("a", "y", "w"), ("b",), ("d",)]) == {
            "a": {"x": 1, "y": {"z": 2, "w": 3}},
            "b": [3],
            "c": "keep",
            "d": None,
        }
        assert kept == {"a": {"x": 1, "y": {"z": 2}}, "b": [1, 2], "c": "keep"}

    def test_a_key_with_a_dot_is_one_key(self) -> None:
        merged = merge({"name": "Lamp"}, {"price.usd": 8.5, "price": {"usd": 1}}, [("price.usd",)])

        assert merged == {"name": "Lamp", "price.usd": 8.5}

    def test_a_path_left_out_of_the_answer_stays_missing(self) -> None:
        assert merge({"a": 1}, {"c": 2}, [("b",)]) == {"a": 1}


class TestItemState:
    def test_scratch_is_typed(self) -> None:
        class Notes:
            def __init__(self, text: str) -> None:
                self.text = text

        s = state()
        assert s.scratch.get(Notes) is None
        s.scratch.put(Notes("first"))
        s.scratch.put(3)
        s.scratch.put(Notes("second"))

        notes = s.scratch.get(Notes)
        assert notes is not None
        assert notes.text == "second"
        assert s.scratch.get(int) == 3
        assert s.scratch.get(str) is None

    def test_fresh_state(self) -> None:
        s = sr.ItemState(ITEM, "ask", 3, 12.5)

        assert (s.state, s.stage, s.prompts, s.attempts, s.attempts_at) == (
            "ask",
            "ask",
            0,
            [],
            [0, 0, 0],
        )
        assert (s.errors, s.partial, s.started) == ((), None, 12.5)
        assert "b1" in repr(s)

    async def test_state_is_isolated_per_item(self, virtual_clock: VirtualClock) -> None:
        class Counted:
            """A user stage kind that counts its own calls in the item's scratch."""

            def build(self, item: sr.WorkItem, st: sr.ItemState, stage: sr.Stage) -> sr.Request:
                st.scratch.put(len(st.attempts) + 1)
                return sr.Request(item.id, stage, item.prompt)

            def parse(self, response: sr.Response, st: sr.ItemState, validator: Any) -> Any:
                return (response.text, st.scratch.get(int))

        states: dict[str, set[int]] = {}

        async def answer(request: sr.Request, ctx: sr.StageContext) -> str:
            states.setdefault(request.item_id, set()).add(id(ctx.state))
            assert ctx.state.item.id == request.item_id
            await ctx.clock.sleep(1.0)
            if ctx.attempt < 3:
                raise sr.TransientError("again")
            return request.item_id

        plan = sr.Plan.from_dict({"stages": [{"name": "c", "kind": "counted"}]}, kinds=["counted"])
        runner = sr.Runner(
            plan,
            from_callable(answer),
            kinds={"counted": Counted()},
            concurrency=20,
            clock=virtual_clock,
        )

        batch = await runner.run((str(i), "p") for i in range(20))

        assert sorted(r.output for r in batch.results) == sorted((str(i), 3) for i in range(20))
        assert all(len(ids) == 1 for ids in states.values())
        assert len({next(iter(ids)) for ids in states.values()}) == 20


async def test_builtin_kinds_is_a_fresh_mapping() -> None:
    kinds = sr.builtin_kinds()
    kinds["mine"] = sr.FullStage()

    assert set(sr.builtin_kinds()) == {"full", "partial"}
    assert isinstance(kinds["partial"], sr.PartialStage)
