"""The plan's Mermaid state diagram with the run's traffic written on it.

Every arrow the plan declares is drawn, as ``plan.to_mermaid()`` draws it, and
the arrows an item took say how many items took them and how many prompts that
cost; each stage says its tries, successes, tokens and cost.  Nothing from the
data reaches the diagram as markup: stage names that are not plain identifiers
(a journal edited by hand) are drawn under a generated id, and every label keeps
only letters, digits and a few marks, so a hostile name cannot break out of its
label nor inject anything into the page that renders it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

from ..._results import ItemStatus
from ._traffic import START, Traffic, Transition

_PLAIN: Final = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
_KEYWORDS: Final = frozenset(
    {"state", "note", "end", "as", "direction", "class", "classdef", "style", "click", "fork",
     "join", "choice", "hide", "left", "right", "of", "acctitle", "accdescr", "default",
     "concurrent", "statediagram", "statediagram-v2"}
)  # fmt: skip
_UNSAFE: Final = re.compile(r"[^A-Za-z0-9_ .,()/+$\-\u00b7]")  # no %: %% starts a directive
_LONGEST_LABEL: Final = 120


def label(text: str) -> str:
    """*text* as a Mermaid label may hold it: unsafe characters become ``?``, cut at 120."""
    return _UNSAFE.sub("?", text)[:_LONGEST_LABEL]


def _money(value: float) -> str:
    return f"${value:,.4f}" if value < 100 else f"${value:,.2f}"


def _count(value: int, one: str, many: str) -> str:
    return f"{value:,} {one if value == 1 else many}"


class _Names:
    """Mermaid node ids for state names: the name when it is a plain identifier."""

    def __init__(self) -> None:
        self.ids: dict[str, str] = {}
        self.aliases: list[str] = []

    def __call__(self, name: str) -> str:
        if name == START:
            return START
        if name not in self.ids:
            if _PLAIN.fullmatch(name) and name.lower() not in _KEYWORDS:
                self.ids[name] = name
            else:
                node = f"state_{len(self.ids)}"
                self.ids[name] = node
                self.aliases.append(f'    state "{label(name)}" as {node}')
        return self.ids[name]


def _edge_label(transition: Transition) -> str:
    if transition.source == START:
        what = ""
    elif transition.triggers:
        what = ", ".join(transition.triggers)
    else:
        what = "not declared " + ", ".join(sorted(transition.causes))
    if not transition.passes:
        return label(what)
    counts = _count(transition.items, "item", "items")
    if transition.passes != transition.items:
        counts += f" {transition.passes:,} times"
    if transition.prompts:
        counts += f", {_count(transition.prompts, 'prompt', 'prompts')}"
    return label(f"{what} \u00b7 {counts}" if what else counts)


def annotated_mermaid(traffic: Traffic) -> str:
    """The Mermaid ``stateDiagram-v2`` source of the plan with *traffic* on it."""
    names = _Names()
    body: list[str] = []
    for stage in traffic.stages:
        node = names(stage.name)
        parts = [
            _count(stage.attempts, "try", "tries"),
            _count(stage.prompts, "prompt", "prompts"),
            f"{stage.succeeded:,} succeeded here",
        ]
        tokens = stage.usage.input_tokens + stage.usage.output_tokens + stage.usage.thinking_tokens
        # Mermaid titles a state with its first description: the stage's own name.
        body.append(f"    {node} : {label(stage.name)}")
        body.append(f"    {node} : {label(', '.join(parts))}")
        money = f", {_money(stage.cost)}" if stage.cost is not None else ""
        body.append(f"    {node} : {label(f'{tokens:,} tokens{money}')}")
    for transition in traffic.transitions:
        text = _edge_label(transition)
        arrow = f"    {names(transition.source)} --> {names(transition.dest)}"
        body.append(f"{arrow}: {text}" if text else arrow)
    terminals = _ends(t.dest for t in traffic.transitions)
    for status in terminals:
        node = names(status)
        count = traffic.statuses.get(status, 0)
        body.append(f"    {node} : {label(status)}")
        body.append(f"    {node} : {label(_count(count, 'item', 'items'))}")
        body.append(f"    {node} --> [*]")
    return "\n".join(["stateDiagram-v2", *names.aliases, *body]) + "\n"


def _ends(dests: Iterable[str]) -> list[str]:
    statuses = [s.value for s in ItemStatus]
    seen = set(dests)
    return [s for s in statuses if s in seen]
