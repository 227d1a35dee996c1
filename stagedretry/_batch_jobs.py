"""What a strategy offers to answer requests in batch jobs (a provider's Batch API).

In batch mode the runner builds every request exactly as in the synchronous mode,
groups them by (stage, model), hands each group to :meth:`SubmitsBatchJobs.submit_batch`
and polls the job with :meth:`SubmitsBatchJobs.poll_batch` until it is done.  Each
answer then goes through the same validation, classification and plan transitions
as a synchronous response: a batch is only another way to deliver responses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Protocol, runtime_checkable

import attrs

from ._outcomes import StagedRetryError
from ._strategy import Request, Response, StageContext

__all__ = ["BatchEntry", "BatchJobLost", "BatchJobState", "SubmitsBatchJobs"]


def _frozen_answers(
    value: Mapping[str, Response | Exception],
) -> Mapping[str, Response | Exception]:
    return MappingProxyType(dict(value))


@attrs.frozen
class BatchEntry:
    """One item's one attempt inside a batch job.

    * *key* -- unique within its job (the runner makes it); the job's answer for this
      entry comes back under the same key.
    * *request* -- built by the stage kind, as for :meth:`Strategy.generate`.
    * *ctx* -- the attempt's :class:`StageContext` (item, stage, params, attempt number).
    """

    key: str
    request: Request
    ctx: StageContext


@attrs.frozen
class BatchJobState:
    """One look at a batch job.

    * *name* -- the service's name for the job (Gemini: ``"batches/…"``).
    * *state* -- the service's own name for its state (Gemini: ``"JOB_STATE_RUNNING"``).
    * *done* -- the job will change no more (succeeded, failed, cancelled or expired).
    * *answers* -- when done: an entry's key to its :class:`Response`, or to the exception
      :meth:`Strategy.generate` would have raised for that request (classified by the same
      rules).  A key that is absent was not answered (the job failed, was cancelled or
      expired before reaching it): it is sent again in a later job, at no prompt.
    """

    name: str
    state: str
    done: bool
    answers: Mapping[str, Response | Exception] = attrs.field(
        factory=dict, converter=_frozen_answers
    )


class BatchJobLost(StagedRetryError):
    """The service no longer knows a batch job (deleted, or its results are gone).

    Raised by :meth:`SubmitsBatchJobs.poll_batch`; the job's entries count as unanswered.
    """


@runtime_checkable
class SubmitsBatchJobs(Protocol):
    """A strategy that can also deliver its responses through batch jobs."""

    async def submit_batch(self, entries: Sequence[BatchEntry]) -> str:
        """Create one batch job answering *entries* (one stage, one model); return its name.

        Raises what :meth:`Strategy.generate` would for a refused request (a 429, a
        transport error, an invalid request), classified by the same rules.
        """

    async def poll_batch(self, name: str) -> BatchJobState:
        """Look at job *name* once (no waiting: the runner polls with backoff).

        Raises :class:`BatchJobLost` when the service no longer has the job, and what
        :meth:`Strategy.generate` would for a failed look (classified the same way).
        """
