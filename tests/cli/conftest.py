"""The job commands' tests use the job tests' temporary home and store (defined once, in tests/jobs/conftest.py)."""

from tests.jobs.conftest import home, store

__all__ = ["home", "store"]
