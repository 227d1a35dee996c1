"""``[run] mode = "batch"``: the runner's batch mode for a pipeline, and what the summary says.

The engine does the work (:class:`stagedretry.BatchMode`); this module only checks that
the backend can submit batch jobs, hands the runner the job's journal (so a killed run
re-attaches to its jobs) and words the summary's notes.
"""

from __future__ import annotations

from collections.abc import Iterable

from stagedretry import BatchMode, BatchStats, Journal, Strategy, SubmitsBatchJobs
from strategies.backend import BackendError

from .pipeline import Pipeline, RunMode


def in_batch_mode(pipeline: Pipeline) -> bool:
    """Whether the pipeline runs its requests in batch jobs."""
    return pipeline.run.mode is RunMode.BATCH


def check_batch_backend(pipeline: Pipeline, strategy: Strategy) -> None:
    """Raise :class:`BackendError` (one sentence naming ``run.mode``) when the pipeline asks for
    batch mode and its backend's strategy cannot submit batch jobs."""
    if in_batch_mode(pipeline) and not isinstance(strategy, SubmitsBatchJobs):
        raise BackendError(
            f"{pipeline.source.name}: run.mode: the {pipeline.backend.kind} backend cannot run "
            'batch jobs; use mode = "sync" (the default), or a backend that can'
        )


def check_unread_jobs(pipeline: Pipeline, journal: Journal, item_ids: Iterable[str]) -> None:
    """Raise :class:`BackendError` (one sentence naming the journal) when a synchronous run
    would send again requests that an earlier batch-mode run's jobs still hold unread.

    Those jobs are billed whether or not their answers are read: only a batch-mode run
    re-attaches to them, so a synchronous one would pay for the same requests twice.
    """
    if in_batch_mode(pipeline):
        return
    unread = journal.unread_batch_items()
    waiting = sorted(set(item_ids) & unread.keys())
    if waiting:
        raise BackendError(
            f"{journal.path}: {len(waiting)} item(s) to run (first {waiting[0]!r}) have "
            "requests in batch jobs an earlier batch-mode run submitted and never read, which "
            'the service bills anyway; run with mode = "batch" (--set run.mode=batch) to '
            "re-attach to them, or with --fresh to forget them and pay for every request again"
        )


def batch_mode(pipeline: Pipeline, journal: Journal) -> BatchMode | None:
    """The runner's batch mode for *pipeline*, recording its jobs in the job's *journal*;
    ``None`` in the synchronous mode."""
    return BatchMode(journal=journal) if in_batch_mode(pipeline) else None


def batch_notes(pipeline: Pipeline, stats: BatchStats) -> list[str]:
    """The summary's lines about batch mode: its jobs, and why a configured cache was not used."""
    if not in_batch_mode(pipeline):
        return []
    notes = [
        f"batch mode: {stats.submitted} batch job(s) submitted, {stats.reattached} of an "
        f"earlier run re-attached to, {stats.resent} request(s) sent again after a job left "
        "them unanswered"
    ]
    if pipeline.cache is not None:
        notes.append(
            "the [cache] context cache was not used: explicit caches inside batch jobs are not "
            "reliably supported, so the instructions go with each request, where the service's "
            "implicit caching may still apply"
        )
    return notes
