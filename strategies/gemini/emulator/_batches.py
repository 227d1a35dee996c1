"""The Batch API and the Files API of the Developer API, minus HTTP.

A batch job is a long-running operation (``batches/<id>``) whose ``metadata`` is a
``GenerateContentBatch``: it is ``BATCH_STATE_PENDING`` when created, ``RUNNING`` from
half its completion time, and at its completion time (on the emulator's clock, read on
every look) it ends ``SUCCEEDED``, or ``FAILED`` / ``EXPIRED`` when a job fault chose so
(then only the first half of its requests is answered).  A job still unfinished 48 hours
after its creation expires unanswered, as the service's do.  Each request is answered by
the same model logic as ``generateContent`` (the content faults and the per-request
error faults applied to it), once, when the job ends; its tokens go to the ledger as
batch tokens.  Inlined requests come back inlined; a job read from an uploaded JSONL
file writes its answers to a generated JSONL file (``files/batch-<id>``).

Files are uploaded with the resumable protocol the SDK speaks (a ``start`` that answers
``X-Goog-Upload-URL``, then ``upload`` / ``upload, finalize`` chunks at given offsets) and
only generated files can be downloaded.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import json
import threading
from collections.abc import Callable, Mapping
from typing import Any, Final

import attrs

from ._caches import page_size_of
from ._faults import CONTENT_FAULTS, Fault, FaultBook, FaultKind
from ._ledger import BatchRecord, LedgerBook
from ._wire import ApiError, format_timestamp, invalid

BATCH_TYPE: Final = "type.googleapis.com/google.ai.generativelanguage.v1beta.GenerateContentBatch"
OUTPUT_TYPE: Final = (
    "type.googleapis.com/google.ai.generativelanguage.v1beta.GenerateContentBatchOutput"
)
MAX_PENDING: Final = 48 * 3600.0
"""Seconds a job may stay pending or running before it expires (the batch-mode guide)."""
INLINE_LIMIT: Final = 20 * 1024 * 1024
"""Bytes: the largest ``batchGenerateContent`` body with inlined requests (the front end's
"Request payload size exceeds the limit: 20971520 bytes.")."""
FILE_LIFETIME: Final = 48 * 3600.0
"""Seconds an uploaded or generated file is kept (the Files API's 48 hours)."""
NOT_FOUND: Final = "Requested entity was not found."

# google.rpc.Code of the per-request errors a job reports (a Status, not an HTTP code).
_GRPC_CODES: Final = {
    400: 3,  # INVALID_ARGUMENT
    401: 16,  # UNAUTHENTICATED
    403: 7,  # PERMISSION_DENIED
    404: 5,  # NOT_FOUND
    429: 8,  # RESOURCE_EXHAUSTED
    500: 13,  # INTERNAL
    503: 14,  # UNAVAILABLE
    504: 4,  # DEADLINE_EXCEEDED
}
_ENTRY_ERRORS: Final = {
    FaultKind.RATE_LIMIT: (429, "Resource has been exhausted (e.g. check quota)."),
    FaultKind.DAILY_QUOTA: (429, "Resource has been exhausted (e.g. check quota)."),
    FaultKind.INTERNAL: (500, "An internal error has occurred."),
    FaultKind.UNAVAILABLE: (503, "The model is overloaded. Please try again later."),
    FaultKind.BAD_GATEWAY: (503, "The service is currently unavailable."),
}
"""What a fault that would refuse a ``generateContent`` does to one request of a job."""


class BatchState(enum.Enum):
    """The job's state as the Developer API names it on the wire (the SDK maps
    ``BATCH_STATE_X`` to its ``JobState.JOB_STATE_X``)."""

    PENDING = "BATCH_STATE_PENDING"
    RUNNING = "BATCH_STATE_RUNNING"
    SUCCEEDED = "BATCH_STATE_SUCCEEDED"
    FAILED = "BATCH_STATE_FAILED"
    CANCELLED = "BATCH_STATE_CANCELLED"
    EXPIRED = "BATCH_STATE_EXPIRED"


_ENDS: Final = {
    FaultKind.BATCH_FAILED: BatchState.FAILED,
    FaultKind.BATCH_EXPIRED: BatchState.EXPIRED,
}


@attrs.define
class _Entry:
    request: dict[str, Any]
    metadata: dict[str, Any] | None = None
    key: str | None = None


@attrs.define
class _Job:
    seq: int
    name: str
    model: str
    display_name: str
    create_time: float
    complete_time: float
    end: BatchState
    entries: list[_Entry]
    source_file: str | None
    state: BatchState = BatchState.PENDING
    update_time: float = 0.0
    end_time: float | None = None
    results: list[dict[str, Any]] | None = None
    results_file: str | None = None


@attrs.define
class _File:
    name: str
    mime_type: str
    display_name: str | None
    create_time: float
    data: bytes = b""
    size: int = 0
    generated: bool = False
    complete: bool = False


class BatchService:
    """The emulated ``batches`` and ``files`` collections.

    *answer* is ``generateContent``'s own logic (model id, request body, content fault ->
    a body and its usage, or an ``ApiError``); *faults* is the emulator's fault book.
    """

    def __init__(
        self,
        *,
        seed: int,
        clock: Callable[[], float],
        answer: Callable[[str, Mapping[str, Any], FaultKind | None], tuple[dict[str, Any], Any]],
        faults: FaultBook,
        ledger: LedgerBook,
        completion: float,
        inline_limit: int,
        lock: threading.RLock,
    ) -> None:
        self._seed = seed
        self._clock = clock
        self._answer = answer
        self._faults = faults
        self._ledger = ledger
        self._completion = completion
        self._inline_limit = inline_limit
        self._lock = lock
        self._jobs: dict[str, _Job] = {}
        self._files: dict[str, _File] = {}
        self._uploads: dict[str, _File] = {}
        self._seq = 0

    # -- batches ------------------------------------------------------------------------

    def create(
        self, model_id: str, body: Mapping[str, Any], raw_size: int, fault: Fault | None
    ) -> dict[str, Any]:
        """``POST models/{model}:batchGenerateContent``: the new job's operation."""
        batch = body.get("batch")
        if not isinstance(batch, Mapping):
            raise invalid("* BatchGenerateContentRequest.batch: batch is required\n")
        display_name = batch.get("displayName", batch.get("display_name"))
        if not isinstance(display_name, str) or not display_name:
            raise invalid("* GenerateContentBatch.display_name: display_name is required\n")
        source = batch.get("inputConfig", batch.get("input_config"))
        if not isinstance(source, Mapping):
            raise invalid("* GenerateContentBatch.input_config: input_config is required\n")
        inline = source.get("requests")
        file_name = source.get("fileName", source.get("file_name"))
        if (inline is None) == (file_name is None):
            raise invalid("Exactly one of requests or file_name must be set in input_config.")
        with self._lock:
            if inline is not None:
                if raw_size > self._inline_limit:
                    raise invalid(
                        f"Request payload size exceeds the limit: {self._inline_limit} bytes."
                    )
                entries = _inline_entries(inline)
            else:
                entries = self._file_entries(file_name)
            if not entries:
                raise invalid("* GenerateContentBatch.input_config: the batch has no requests\n")
            now = self._clock()
            self._seq += 1
            job_id = self._new_id("batch", self._seq)
            end = _ENDS.get(fault.kind, BatchState.SUCCEEDED) if fault else BatchState.SUCCEEDED
            job = _Job(
                seq=self._seq,
                name=f"batches/{job_id}",
                model=f"models/{model_id}",
                display_name=display_name,
                create_time=now,
                complete_time=now + self._completion,
                end=end,
                entries=entries,
                source_file=file_name if isinstance(file_name, str) else None,
                update_time=now,
            )
            self._jobs[job.name] = job
            self._ledger.record_batch(
                BatchRecord(
                    name=job.name,
                    model=job.model,
                    display_name=display_name,
                    requests=len(entries),
                    source="file" if job.source_file else "inline",
                )
            )
            self._advance(job, now)
            return self._operation(job)

    def get(self, name: str) -> dict[str, Any]:
        """``GET batches/{id}``: the job's operation, brought up to the clock first."""
        with self._lock:
            job = self._job(name)
            self._advance(job, self._clock())
            return self._operation(job)

    def list_jobs(self, query: Mapping[str, str]) -> dict[str, Any]:
        """``GET batches``: one page of jobs in creation order (``operations``)."""
        size = page_size_of(query)
        token = query.get("pageToken", query.get("page_token")) or None
        after = _decode_token(token) if token else 0
        with self._lock:
            now = self._clock()
            jobs = sorted((j for j in self._jobs.values() if j.seq > after), key=lambda j: j.seq)
            chosen = jobs[:size]
            for job in chosen:
                self._advance(job, now)
            body: dict[str, Any] = {}
            if chosen:
                body["operations"] = [self._operation(job) for job in chosen]
            if len(jobs) > size:
                body["nextPageToken"] = _encode_token(chosen[-1].seq)
            self._ledger.count(batches_listed=1)
            return body

    def cancel(self, name: str) -> dict[str, Any]:
        """``POST batches/{id}:cancel``: an unfinished job ends cancelled, unanswered."""
        with self._lock:
            job = self._job(name)
            now = self._clock()
            self._advance(job, now)
            if job.state in (BatchState.PENDING, BatchState.RUNNING):
                job.state = BatchState.CANCELLED
                job.update_time = job.end_time = now
                job.results = []
            self._ledger.count(batches_cancelled=1)
            return {}

    def delete(self, name: str) -> dict[str, Any]:
        """``DELETE batches/{id}``: the service forgets the job (it is not cancelled)."""
        with self._lock:
            job = self._job(name)
            del self._jobs[job.name]
            self._ledger.count(batches_deleted=1)
            return {}

    def drop(self, name: str) -> bool:
        """Forget a job, as if the service lost it; True if it existed."""
        with self._lock:
            return self._jobs.pop(name, None) is not None

    def requests_of(self, name: str) -> tuple[dict[str, Any], ...]:
        """The requests of job *name* as the emulator read them (copies)."""
        with self._lock:
            return tuple(json.loads(json.dumps(e.request)) for e in self._job(name).entries)

    def names(self) -> tuple[str, ...]:
        """The jobs' names, in creation order."""
        with self._lock:
            return tuple(j.name for j in sorted(self._jobs.values(), key=lambda j: j.seq))

    # -- files --------------------------------------------------------------------------

    def start_upload(self, body: Mapping[str, Any], size: str | None, mime: str | None) -> str:
        """The ``start`` of a resumable upload: the upload's id (for ``X-Goog-Upload-URL``)."""
        spec = body.get("file") if isinstance(body.get("file"), Mapping) else {}
        assert isinstance(spec, Mapping)
        try:
            declared = spec.get("sizeBytes", spec.get("size_bytes", -1))
            total = int(size) if size is not None else int(declared)
        except (TypeError, ValueError):
            raise invalid("X-Goog-Upload-Header-Content-Length must be a number.") from None
        if total < 0:
            raise invalid("X-Goog-Upload-Header-Content-Length is required.")
        mime_type = mime or spec.get("mimeType", spec.get("mime_type")) or "text/plain"
        display = spec.get("displayName", spec.get("display_name"))
        with self._lock:
            self._seq += 1
            upload_id = self._new_id("upload", self._seq)
            wanted = spec.get("name")
            name = wanted if isinstance(wanted, str) and wanted.startswith("files/") else None
            self._uploads[upload_id] = _File(
                name=name or f"files/{self._new_id('file', self._seq)}",
                mime_type=str(mime_type),
                display_name=display if isinstance(display, str) else None,
                create_time=self._clock(),
                size=total,
            )
            return upload_id

    def upload_chunk(
        self, upload_id: str, command: str, offset: str | None, chunk: bytes
    ) -> dict[str, Any] | None:
        """One ``upload`` (or ``upload, finalize``) of a resumable upload; the ``File`` when
        finalized, else ``None`` (the upload stays active)."""
        commands = {c.strip() for c in command.split(",")}
        with self._lock:
            upload = self._uploads.get(upload_id)
            if upload is None:
                raise ApiError(404, NOT_FOUND)
            if "upload" in commands:
                if offset is None or not offset.isdigit() or int(offset) != len(upload.data):
                    raise invalid(f"X-Goog-Upload-Offset must be {len(upload.data)}.")
                upload.data += chunk
            if "finalize" not in commands:
                return None
            if len(upload.data) != upload.size:
                raise invalid(
                    f"The upload has {len(upload.data)} bytes; {upload.size} were announced."
                )
            del self._uploads[upload_id]
            upload.complete = True
            self._files[upload.name] = upload
            self._ledger.count(files_uploaded=1)
            return {"file": self._file_json(upload)}

    def get_file(self, name: str) -> dict[str, Any]:
        """``GET files/{id}``."""
        with self._lock:
            return self._file_json(self._file(name))

    def download(self, name: str) -> bytes:
        """``GET files/{id}:download?alt=media``: a generated file's bytes."""
        with self._lock:
            found = self._file(name)
            if not found.generated:
                raise invalid("Only generated files can be downloaded.")
            return found.data

    def delete_file(self, name: str) -> dict[str, Any]:
        """``DELETE files/{id}``."""
        with self._lock:
            self._files.pop(self._file(name).name)
            return {}

    # -- the job's life -----------------------------------------------------------------

    def _advance(self, job: _Job, now: float) -> None:
        """Bring *job* to its state at *now*; answer its requests when it ends."""
        if job.state not in (BatchState.PENDING, BatchState.RUNNING):
            return
        deadline = job.create_time + MAX_PENDING
        end_at = min(job.complete_time, deadline)
        if now < end_at:
            midway = job.create_time + (end_at - job.create_time) / 2
            running = now >= midway and end_at > job.create_time
            state = BatchState.RUNNING if running else BatchState.PENDING
            if state is not job.state:
                job.state, job.update_time = state, now
            return
        end = job.end if job.complete_time <= deadline else BatchState.EXPIRED
        if end is BatchState.SUCCEEDED:
            answered = job.entries
        elif job.complete_time > deadline:
            answered = []
        else:
            answered = job.entries[: len(job.entries) // 2]
        results = [self._answer_entry(job, entry) for entry in answered]
        job.state = end
        job.update_time = job.end_time = end_at
        job.results = results
        if job.source_file is None:
            return
        lines = [
            json.dumps({"key": entry.key, **result} if entry.key is not None else result)
            for entry, result in zip(answered, results, strict=True)
        ]
        data = ("\n".join(lines) + "\n").encode() if lines else b""
        results_name = f"files/{job.name.removeprefix('batches/')}"
        self._files[results_name] = _File(
            name=results_name,
            mime_type="application/jsonl",
            display_name=None,
            create_time=end_at,
            data=data,
            size=len(data),
            generated=True,
            complete=True,
        )
        job.results_file = results_name

    def _answer_entry(self, job: _Job, entry: _Entry) -> dict[str, Any]:
        """One request's answer ``{"response": ...}`` or ``{"error": ...}`` (with its metadata)."""
        raw = json.dumps(entry.request, sort_keys=True).encode()
        label = b"POST %s:batch\n" % job.model.encode()
        fault = self._faults.pick("generateContent", label + raw)
        kind = fault.kind if fault else None
        tail: dict[str, Any] = {"metadata": entry.metadata} if entry.metadata is not None else {}
        refusal = _ENTRY_ERRORS.get(kind) if kind is not None else None
        if refusal is not None:
            return {"error": _status(*refusal), **tail}
        try:
            body, usage = self._answer(
                job.model.removeprefix("models/"),
                entry.request,
                kind if kind in CONTENT_FAULTS else None,
            )
        except ApiError as error:
            return {"error": _status(error.code, error.message), **tail}
        if usage is not None:
            self._ledger.bill_batch(usage)
        return {"response": body, **tail}

    def _operation(self, job: _Job) -> dict[str, Any]:
        """The job as the service shows it: an ``Operation`` with a ``GenerateContentBatch``."""
        done = job.state not in (BatchState.PENDING, BatchState.RUNNING)
        metadata: dict[str, Any] = {
            "@type": BATCH_TYPE,
            "model": job.model,
            "displayName": job.display_name,
            "createTime": format_timestamp(job.create_time),
            "updateTime": format_timestamp(job.update_time),
            "batchStats": {"requestCount": str(len(job.entries))},
            "state": job.state.value,
            "name": job.name,
        }
        if job.source_file is not None:
            metadata["inputConfig"] = {"fileName": job.source_file}
        if job.end_time is not None:
            metadata["endTime"] = format_timestamp(job.end_time)
        operation: dict[str, Any] = {"name": job.name, "metadata": metadata}
        if done:
            output: dict[str, Any] = {"@type": OUTPUT_TYPE}
            if job.results_file is not None:
                output["responsesFile"] = job.results_file
            elif job.results:
                output["inlinedResponses"] = {"inlinedResponses": list(job.results)}
            stats = _stats(job)
            metadata["batchStats"] = stats
            metadata["output"] = {k: v for k, v in output.items() if k != "@type"}
            operation["done"] = True
            if job.state is BatchState.SUCCEEDED:
                operation["response"] = output
            elif job.state is BatchState.FAILED:
                operation["error"] = {"code": 13, "message": "The batch failed."}
        return operation

    # -- helpers ------------------------------------------------------------------------

    def _job(self, name: str) -> _Job:
        job = self._jobs.get(name if name.startswith("batches/") else f"batches/{name}")
        if job is None:
            raise ApiError(404, NOT_FOUND)
        return job

    def _file(self, name: str) -> _File:
        found = self._files.get(name if name.startswith("files/") else f"files/{name}")
        if found is None or self._clock() >= found.create_time + FILE_LIFETIME:
            raise ApiError(403, _file_missing(name))
        return found

    def _file_entries(self, name: object) -> list[_Entry]:
        if not isinstance(name, str) or not name.startswith("files/"):
            raise invalid(f"Invalid file name: {name!r}. Expected format: files/{{file}}.")
        found = self._file(name)
        entries: list[_Entry] = []
        lines = found.data.decode("utf-8", "replace").split("\n")  # JSON may hold U+2028 raw
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                raise invalid(f"Invalid JSON in line {number} of {name}.") from None
            request = row.get("request") if isinstance(row, dict) else None
            if not isinstance(request, dict):
                raise invalid(f"Line {number} of {name} has no request object.")
            key = row.get("key")
            entries.append(_Entry(request=request, key=key if isinstance(key, str) else None))
        return entries

    def _file_json(self, found: _File) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": found.name,
            "mimeType": found.mime_type,
            "sizeBytes": str(found.size),
            "createTime": format_timestamp(found.create_time),
            "updateTime": format_timestamp(found.create_time),
            "expirationTime": format_timestamp(found.create_time + FILE_LIFETIME),
            "sha256Hash": base64.b64encode(hashlib.sha256(found.data).digest()).decode(),
            "uri": f"https://generativelanguage.googleapis.com/v1beta/{found.name}",
            "state": "ACTIVE",
            "source": "GENERATED" if found.generated else "UPLOADED",
        }
        if found.display_name:
            body["displayName"] = found.display_name
        if found.generated:
            body["downloadUri"] = (
                f"https://generativelanguage.googleapis.com/v1beta/{found.name}:download?alt=media"
            )
        return body

    def _new_id(self, kind: str, number: int) -> str:
        digest = hashlib.blake2b(f"{self._seed}:{kind}:{number}".encode(), digest_size=10)
        return digest.hexdigest()


def _inline_entries(inline: object) -> list[_Entry]:
    rows = inline.get("requests") if isinstance(inline, Mapping) else None
    if not isinstance(rows, list):
        raise invalid("* InputConfig.requests.requests: requests must be a list\n")
    entries: list[_Entry] = []
    for index, row in enumerate(rows):
        request = row.get("request") if isinstance(row, Mapping) else None
        if not isinstance(request, dict):
            raise invalid(f"* InlinedRequests.requests[{index}].request: request is required\n")
        metadata = row.get("metadata")
        kept = dict(metadata) if isinstance(metadata, Mapping) else None
        entries.append(_Entry(request=request, metadata=kept))
    return entries


def _status(code: int, message: str) -> dict[str, Any]:
    """A ``google.rpc.Status`` as a job reports one request's failure."""
    return {"code": _GRPC_CODES.get(code, 2), "message": message}


def _stats(job: _Job) -> dict[str, str]:
    results = job.results or []
    ok = sum(1 for r in results if "response" in r)
    failed = len(results) - ok
    return {
        "requestCount": str(len(job.entries)),
        "successfulRequestCount": str(ok),
        "failedRequestCount": str(failed),
        "pendingRequestCount": str(len(job.entries) - len(results)),
    }


def _file_missing(name: str) -> str:
    bare = name.removeprefix("files/")
    return f"You do not have permission to access the File {bare} or it may not exist."


def _encode_token(seq: int) -> str:
    return base64.urlsafe_b64encode(f"after:{seq}".encode()).decode().rstrip("=")


def _decode_token(token: str) -> int:
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        return int(text.removeprefix("after:"))
    except ValueError:
        raise invalid("Invalid page token.") from None
