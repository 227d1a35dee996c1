"""Shared test configuration: hypothesis profiles (fixtures come from the stagedretry plugin)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# "ci" (the default) is derandomized and keeps no example database, so a run is
# reproducible on any machine; "dev" explores new examples on every run.
settings.register_profile(
    "ci",
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None, max_examples=300)
settings.load_profile(os.environ.get("STAGEDRETRY_HYPOTHESIS_PROFILE", "ci"))
