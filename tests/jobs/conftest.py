"""Job tests run real training and evaluation jobs on the small workspaces of tests/train."""

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "middo_train_test_fixtures", Path(__file__).resolve().parents[1] / "train" / "conftest.py")
_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fixtures)

small_workspace = _fixtures.small_workspace
capital_samples = _fixtures.capital_samples
