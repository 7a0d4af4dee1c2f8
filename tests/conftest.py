"""Suite-wide settings: Hypothesis without per-example deadlines.

`make test` runs three worker processes on a 2-core box beside brokers and service processes, so an
example's wall-clock time says more about the box's load than about the code; the properties stay.
"""

from hypothesis import settings

settings.register_profile("choreo", deadline=None)
settings.load_profile("choreo")
