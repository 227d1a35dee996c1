"""Issue 11 as an adversary found it: the run-stop sentence of the command line."""

from __future__ import annotations

import pytest

from stagedretry.cli._app import _stopped_sentence


@pytest.mark.parametrize(
    ("reason", "shown"),
    [
        ("the model was not found", "the model was not found. Fix it"),
        ("the model was not found.", "the model was not found. Fix it"),
        # A cause cut short keeps its ellipsis (it read "..., . Fix it" before).
        ("403 PERMISSION_DENIED: a long server message, ...", "message, ... Fix it"),
    ],
)
def test_the_stop_sentence_keeps_the_cause_whole(reason: str, shown: str) -> None:
    sentence = _stopped_sentence(reason, finished=2, left=3)
    assert shown in sentence
    assert ", . " not in sentence
    assert sentence.endswith("finish the job; 2 items finished, 3 left")
