"""Public helpers for testing code built on stagedretry.

``VirtualClock`` runs backoffs and cooldowns in virtual time.
"""

from ._clock import VirtualClock

__all__ = ["VirtualClock"]
