"""The pipeline file: one declared job, parsed once into typed objects.

A pipeline (TOML, or YAML) names the plan, the backend, the shared cache, the
input and its prompt template, the output model, the journal, the run's limits
and a price table.  :func:`load_pipeline` reads it, applies command-line
overrides and checks everything before any request is sent; every mistake is a
:class:`~stagedretry.PlanError` naming the file, the dotted path of the value
and what was expected.

The sections (relative paths are relative to the pipeline file; those given
with ``--set`` are relative to the current directory)::

    name = "books"                      # default: the file's stem
    [plan]                              # the schema of Plan.from_dict; stage params are
                                        # checked against the backend's params type
    [backend]                           # or backend = "sim"
    kind = "gemini" | "emulator" | "sim"   model = "gemini-2.5-flash"
    ...                                 # the rest is the backend's own section (its spec's
                                        # section_type; see strategies.backend):
    api_version = "v1beta"              base_url = "..."   (gemini)
    [backend.emulator]                  seed, invalid_rate, invalid_rate_slope, latency,
                                        min_cache_tokens, expiry_style, [[...faults]]
    [backend.sim]                       seed, invalid_rate, temperature_slope, transient_rate,
                                        rate_limit_rate, retry_after, latency
    [cache]                             system_instruction = "file", enabled, ttl,
                                        renew_margin, on_close = "keep" | "delete", tag
    [input]                             path, id_field = "id", template | template_file
    [output]                            path, model = "module:Class" | schema = "file.json"
                                        (a module beside the pipeline file comes first)
    [journal]                           path (default: beside the output)
    [run]                               concurrency, deadline (whole run, s), seed, request_log
    [prices."<model>"]                  input, cached_input, output (per 1M tokens),
                                        cache_storage (per 1M tokens per hour)
"""

from ._model import (
    DEFAULT_MODEL,
    BackendConfig,
    CacheConfig,
    InputConfig,
    JournalConfig,
    OutputConfig,
    Pipeline,
    Price,
    RunConfig,
)
from ._overrides import parse_override, split_key
from ._reading import SECTIONS, load_pipeline, same_file
from ._template import MissingField, Template

__all__ = [
    "DEFAULT_MODEL",
    "SECTIONS",
    "BackendConfig",
    "CacheConfig",
    "InputConfig",
    "JournalConfig",
    "MissingField",
    "OutputConfig",
    "Pipeline",
    "Price",
    "RunConfig",
    "Template",
    "load_pipeline",
    "parse_override",
    "same_file",
    "split_key",
]
