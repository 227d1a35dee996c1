"""The bundled example behind ``stagedretry demo``: legacy book records enriched into ``Book``.

Shipped as package data: ``books.jsonl`` (300 records, made by ``_generate.py``),
``instructions.md`` (the shared system instruction, cached once for every
request), ``pipeline.toml`` and the output model in :mod:`stagedretry.demo.model`.
"""
