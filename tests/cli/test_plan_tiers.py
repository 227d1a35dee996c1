"""``plan show`` names a stage's fallbacks: a shed request, giving up, a near deadline."""

from __future__ import annotations

from collections.abc import Callable

from .conftest import Invocation, Job


def test_plan_show_names_the_fallbacks(
    make_job: Callable[..., Job], cli: Callable[..., Invocation]
) -> None:
    job = make_job()
    text = job.pipeline.read_text("utf-8").replace(
        'name = "full_t0"\n',
        'name = "full_t0"\nmax_attempts = 2\n'
        'on = { shed = "full_t25", give_up = "full_t25" }\n'
        'expedite = { within = 60, to = "full_t25" }\n',
    )
    if "deadline" not in text:
        text = text.replace("[plan]\n", "[plan]\ndeadline = 600\n", 1)
    job.pipeline.write_text(text, "utf-8")
    shown = cli("plan", "show", str(job.pipeline), width=240)
    assert shown.code == 0, shown.out
    line = next(line for line in shown.out.splitlines() if line.strip().startswith("full_t0"))
    assert "shed -> full_t25; give_up -> full_t25; expedite (60 s left) -> full_t25" in line, line
    # Stages without one show a dash in that column.
    other = next(line for line in shown.out.splitlines() if line.strip().startswith("full_t25"))
    assert " - " in other
