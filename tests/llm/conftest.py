"""Fixtures of the vLLM tests: the project's own numbers, computed once for the session."""

from __future__ import annotations

import pytest
from vllm_reference import JUDGED, MAX_LEN, demo_samples, reference


@pytest.fixture(scope="session")
def project_reference():
    """(samples, reference): the demo's training samples and the project's passes on them (loss
    of every sample, the judge's ratings of the first JUDGED in both modes), bf16 and float32."""
    samples = demo_samples()
    return samples, reference(samples, JUDGED, MAX_LEN)
