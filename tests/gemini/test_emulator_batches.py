"""The emulator's Batch API and Files API, through the real SDK over HTTP: the SDK's types."""

from __future__ import annotations

import io
import json
from collections.abc import Callable

import pytest
from google import genai
from google.genai import errors, types

from stagedretry.testing import VirtualClock
from strategies.gemini.emulator import Fault, FaultKind, GeminiEmulator

MODEL = "gemini-2.5-flash"
NAMED = types.CreateBatchJobConfig(display_name="a-job")  # the API requires a display name


def inlined(n: int, *, prefix: str = "k") -> list[types.InlinedRequest]:
    return [
        types.InlinedRequest(
            contents=f"Write about item {i}.",
            metadata={"key": f"{prefix}{i}"},
            config=types.GenerateContentConfig(temperature=0.0, system_instruction="Be brief."),
        )
        for i in range(n)
    ]


def jsonl(n: int) -> bytes:
    rows = [
        {"key": f"f{i}", "request": {"contents": [{"role": "user", "parts": [{"text": f"q {i}"}]}]}}
        for i in range(n)
    ]
    return "\n".join(json.dumps(row) for row in rows).encode()


@pytest.fixture
def emu(start_on_clock: Callable[..., GeminiEmulator]) -> GeminiEmulator:
    return start_on_clock(7, batch_completion=100.0)


@pytest.fixture
def client(connect: Callable[..., genai.Client], emu: GeminiEmulator) -> genai.Client:
    return connect(emu)


async def test_inline_job_moves_pending_running_succeeded_on_the_clock(
    client: genai.Client, emu: GeminiEmulator, virtual_clock: VirtualClock
) -> None:
    job = await client.aio.batches.create(
        model=MODEL, src=inlined(3), config=types.CreateBatchJobConfig(display_name="first")
    )
    assert isinstance(job, types.BatchJob)
    assert job.name is not None
    assert job.name.startswith("batches/")
    assert job.state is types.JobState.JOB_STATE_PENDING
    assert job.display_name == "first"
    assert job.model == f"models/{MODEL}"
    assert job.create_time is not None
    assert job.dest is None
    assert not job.done
    virtual_clock.advance(50.0)
    running = await client.aio.batches.get(name=job.name)
    assert running.state is types.JobState.JOB_STATE_RUNNING
    assert emu.ledger.batch_calls == 0  # nothing is answered before the job ends
    virtual_clock.advance(50.0)
    done = await client.aio.batches.get(name=job.name)
    assert done.state is types.JobState.JOB_STATE_SUCCEEDED
    assert done.done
    assert done.dest is not None
    assert done.dest.inlined_responses is not None
    answers = done.dest.inlined_responses
    assert all(isinstance(a, types.InlinedResponse) for a in answers)
    assert [a.metadata for a in answers] == [{"key": f"k{i}"} for i in range(3)]
    assert all(a.error is None and a.response is not None and a.response.text for a in answers)
    usage = [a.response.usage_metadata for a in answers if a.response is not None]
    led = emu.ledger
    assert led.batch_calls == 3
    assert led.generate_calls == 0
    assert led.batch_prompt_tokens == sum(u.prompt_token_count or 0 for u in usage if u)
    assert led.batch_candidates_tokens == sum(u.candidates_token_count or 0 for u in usage if u)
    assert [r.source for r in led.batch_jobs] == ["inline"]


async def test_answers_are_generate_contents_own(
    client: genai.Client, emu: GeminiEmulator, virtual_clock: VirtualClock
) -> None:
    """The same request gets the same answer in a job as from generateContent."""
    request = inlined(1)[0]
    job = await client.aio.batches.create(model=MODEL, src=[request], config=NAMED)
    virtual_clock.advance(100.0)
    done = await client.aio.batches.get(name=job.name or "")
    assert done.dest is not None
    assert done.dest.inlined_responses
    in_batch = done.dest.inlined_responses[0].response
    direct = await client.aio.models.generate_content(
        model=MODEL, contents=request.contents, config=request.config
    )
    assert in_batch is not None
    assert in_batch.text == direct.text


async def test_file_job_reads_an_uploaded_jsonl_and_writes_a_responses_file(
    client: genai.Client, emu: GeminiEmulator, virtual_clock: VirtualClock
) -> None:
    data = jsonl(3)
    uploaded = await client.aio.files.upload(
        file=io.BytesIO(data), config=types.UploadFileConfig(mime_type="jsonl", display_name="in")
    )
    assert isinstance(uploaded, types.File)
    assert uploaded.name is not None
    assert uploaded.name.startswith("files/")
    assert uploaded.size_bytes == len(data)
    assert uploaded.display_name == "in"
    assert uploaded.state is types.FileState.ACTIVE
    assert uploaded.source is types.FileSource.UPLOADED
    assert uploaded.download_uri is None
    job = await client.aio.batches.create(model=MODEL, src=uploaded.name, config=NAMED)
    virtual_clock.advance(100.0)
    done = await client.aio.batches.get(name=job.name or "")
    assert done.state is types.JobState.JOB_STATE_SUCCEEDED
    assert done.dest is not None
    assert done.dest.file_name
    assert not done.dest.inlined_responses
    generated = await client.aio.files.get(name=done.dest.file_name)
    assert generated.source is types.FileSource.GENERATED
    assert generated.download_uri
    lines = (await client.aio.files.download(file=done.dest.file_name)).decode().splitlines()
    rows = [json.loads(line) for line in lines]
    assert [row["key"] for row in rows] == ["f0", "f1", "f2"]
    for row in rows:
        response = types.GenerateContentResponse.model_validate(row["response"])
        assert response.text
        assert response.usage_metadata is not None
    assert [r.source for r in emu.ledger.batch_jobs] == ["file"]
    assert emu.ledger.files_uploaded == 1


# aiohttp warns when the SDK hands it a chunk as raw bytes (ignored by Python's default
# filters; only this suite makes warnings errors).
@pytest.mark.filterwarnings("ignore:Sending a large body directly:ResourceWarning")
async def test_upload_in_several_chunks(
    client: genai.Client, emu: GeminiEmulator, virtual_clock: VirtualClock
) -> None:
    """The SDK sends 8 MiB chunks: a bigger file is uploaded with "upload" then "finalize"."""
    data = jsonl(2) + b"\n" + b" " * (9 * 1024 * 1024)
    uploaded = await client.aio.files.upload(
        file=io.BytesIO(data), config=types.UploadFileConfig(mime_type="jsonl")
    )
    assert uploaded.size_bytes == len(data)
    job = await client.aio.batches.create(model=MODEL, src=uploaded.name or "", config=NAMED)
    assert len(emu.batch_requests(job.name or "")) == 2


async def test_list_pages_and_cancel_and_delete(
    client: genai.Client, emu: GeminiEmulator, virtual_clock: VirtualClock
) -> None:
    batches = client.aio.batches
    names = [(await batches.create(model=MODEL, src=inlined(1), config=NAMED)).name for _ in "abc"]
    pager = await client.aio.batches.list(config=types.ListBatchJobsConfig(page_size=2))
    assert len(pager.page) == 2
    assert [job.name async for job in pager] == names
    await client.aio.batches.cancel(name=names[0] or "")
    cancelled = await client.aio.batches.get(name=names[0] or "")
    assert cancelled.state is types.JobState.JOB_STATE_CANCELLED
    assert cancelled.done
    assert emu.ledger.batches_cancelled == 1
    virtual_clock.advance(100.0)
    still = await client.aio.batches.get(name=names[0] or "")
    assert still.state is types.JobState.JOB_STATE_CANCELLED
    assert still.dest is not None
    assert not still.dest.inlined_responses  # a cancelled job answers nothing
    await client.aio.batches.delete(name=names[1] or "")
    with pytest.raises(errors.ClientError) as lost:
        await client.aio.batches.get(name=names[1] or "")
    assert lost.value.code == 404
    assert lost.value.status == "NOT_FOUND"


@pytest.mark.parametrize(
    ("kind", "state"),
    [
        (FaultKind.BATCH_FAILED, types.JobState.JOB_STATE_FAILED),
        (FaultKind.BATCH_EXPIRED, types.JobState.JOB_STATE_EXPIRED),
    ],
)
async def test_a_job_fault_ends_it_with_half_its_requests_answered(
    client: genai.Client,
    emu: GeminiEmulator,
    virtual_clock: VirtualClock,
    kind: FaultKind,
    state: types.JobState,
) -> None:
    emu.inject(Fault(kind=kind, route="batchGenerateContent", times=1))
    job = await client.aio.batches.create(model=MODEL, src=inlined(4), config=NAMED)
    virtual_clock.advance(100.0)
    done = await client.aio.batches.get(name=job.name or "")
    assert done.state is state
    assert done.done
    assert done.dest is not None
    assert done.dest.inlined_responses is not None
    assert [a.metadata for a in done.dest.inlined_responses] == [{"key": "k0"}, {"key": "k1"}]
    assert emu.ledger.batch_calls == 2
    # The fault fires on create only: the next job succeeds.
    other = await client.aio.batches.create(model=MODEL, src=inlined(1), config=NAMED)
    virtual_clock.advance(100.0)
    assert (await client.aio.batches.get(name=other.name or "")).state is (
        types.JobState.JOB_STATE_SUCCEEDED
    )


async def test_a_job_unfinished_after_48_hours_expires_unanswered(
    start_on_clock: Callable[..., GeminiEmulator],
    connect: Callable[..., genai.Client],
    virtual_clock: VirtualClock,
) -> None:
    emu = start_on_clock(3, batch_completion=50 * 3600.0)
    client = connect(emu)
    job = await client.aio.batches.create(model=MODEL, src=inlined(2), config=NAMED)
    virtual_clock.advance(47 * 3600.0)
    assert (await client.aio.batches.get(name=job.name or "")).state is (
        types.JobState.JOB_STATE_RUNNING
    )
    virtual_clock.advance(3600.0)
    done = await client.aio.batches.get(name=job.name or "")
    assert done.state is types.JobState.JOB_STATE_EXPIRED
    assert done.dest is not None
    assert not done.dest.inlined_responses
    assert emu.ledger.batch_calls == 0


async def test_per_request_errors_come_back_as_a_status(
    client: genai.Client, emu: GeminiEmulator, virtual_clock: VirtualClock
) -> None:
    emu.inject(Fault(kind=FaultKind.RATE_LIMIT, at={2}))
    emu.inject(Fault(kind=FaultKind.INTERNAL, at={3}))
    job = await client.aio.batches.create(model=MODEL, src=inlined(3), config=NAMED)
    virtual_clock.advance(100.0)
    done = await client.aio.batches.get(name=job.name or "")
    assert done.dest is not None
    assert done.dest.inlined_responses
    first, second, third = done.dest.inlined_responses
    assert first.error is None
    assert first.response is not None
    assert second.response is None
    assert isinstance(second.error, types.JobError)
    assert second.error.code == 8  # google.rpc.Code RESOURCE_EXHAUSTED
    assert third.error is not None
    assert third.error.code == 13
    assert emu.ledger.batch_calls == 1


async def test_a_bad_request_inside_a_job_is_its_own_error(
    client: genai.Client, emu: GeminiEmulator, virtual_clock: VirtualClock
) -> None:
    bad = types.InlinedRequest(
        contents="x", metadata={"key": "bad"}, config=types.GenerateContentConfig(temperature=3.0)
    )
    job = await client.aio.batches.create(model=MODEL, src=[*inlined(1), bad], config=NAMED)
    virtual_clock.advance(100.0)
    done = await client.aio.batches.get(name=job.name or "")
    assert done.state is types.JobState.JOB_STATE_SUCCEEDED
    assert done.dest is not None
    assert done.dest.inlined_responses
    good, refused = done.dest.inlined_responses
    assert good.response is not None
    assert refused.error is not None
    assert refused.error.code == 3


async def test_content_faults_shape_an_answer_inside_a_job(
    client: genai.Client, emu: GeminiEmulator, virtual_clock: VirtualClock
) -> None:
    emu.inject(Fault(kind=FaultKind.BLOCKED_PROMPT, at={1}))
    job = await client.aio.batches.create(model=MODEL, src=inlined(1), config=NAMED)
    virtual_clock.advance(100.0)
    done = await client.aio.batches.get(name=job.name or "")
    assert done.dest is not None
    assert done.dest.inlined_responses
    response = done.dest.inlined_responses[0].response
    assert response is not None
    assert response.prompt_feedback is not None
    assert response.prompt_feedback.block_reason is types.BlockedReason.SAFETY


async def test_a_job_needs_a_display_name(client: genai.Client) -> None:
    with pytest.raises(errors.ClientError) as refused:
        await client.aio.batches.create(model=MODEL, src=inlined(1))
    assert refused.value.code == 400
    assert "display_name" in (refused.value.message or "")


async def test_refusals_are_api_errors_with_the_services_status(
    client: genai.Client, emu: GeminiEmulator, virtual_clock: VirtualClock
) -> None:
    emu.inject(Fault(kind=FaultKind.RATE_LIMIT, route="batchGenerateContent", times=1))
    with pytest.raises(errors.ClientError) as refused:
        await client.aio.batches.create(model=MODEL, src=inlined(1), config=NAMED)
    assert refused.value.code == 429
    assert refused.value.status == "RESOURCE_EXHAUSTED"
    assert emu.ledger.batch_jobs == ()
    with pytest.raises(errors.ClientError) as missing:
        await client.aio.files.download(file="files/nope")
    assert missing.value.code == 403
    assert missing.value.status == "PERMISSION_DENIED"
    uploaded = await client.aio.files.upload(
        file=io.BytesIO(jsonl(1)), config=types.UploadFileConfig(mime_type="jsonl")
    )
    with pytest.raises(errors.ClientError) as not_generated:
        await client.aio.files.download(file=uploaded.name or "")
    assert not_generated.value.code == 400


async def test_an_inline_body_over_the_limit_is_refused(
    start_on_clock: Callable[..., GeminiEmulator],
    connect: Callable[..., genai.Client],
) -> None:
    emu = start_on_clock(3, batch_inline_limit=2000)
    client = connect(emu)
    await client.aio.batches.create(model=MODEL, src=inlined(2), config=NAMED)
    with pytest.raises(errors.ClientError) as refused:
        await client.aio.batches.create(model=MODEL, src=inlined(20), config=NAMED)
    assert refused.value.code == 400
    assert refused.value.message == "Request payload size exceeds the limit: 2000 bytes."


async def test_implicit_caching_shows_in_a_jobs_usage(
    start_on_clock: Callable[..., GeminiEmulator],
    connect: Callable[..., genai.Client],
    virtual_clock: VirtualClock,
) -> None:
    emu = start_on_clock(3, implicit_caching=True, min_cache_tokens=64, batch_completion=0.0)
    client = connect(emu)
    stable = " ".join(["stable"] * 200)
    requests = [
        types.InlinedRequest(
            contents=f"question {i}",
            metadata={"key": str(i)},
            config=types.GenerateContentConfig(system_instruction=stable),
        )
        for i in range(3)
    ]
    job = await client.aio.batches.create(model=MODEL, src=requests, config=NAMED)
    done = await client.aio.batches.get(name=job.name or "")
    assert done.dest is not None
    assert done.dest.inlined_responses
    cached = [
        (a.response.usage_metadata.cached_content_token_count or 0)
        for a in done.dest.inlined_responses
        if a.response is not None and a.response.usage_metadata is not None
    ]
    assert cached[0] == 0
    assert all(c >= 200 for c in cached[1:])
    assert emu.ledger.batch_cached_tokens == sum(cached)
