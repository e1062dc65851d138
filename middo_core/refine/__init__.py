"""Refinement of flagged samples: operators (simplify, improve, augment, respond), parsing,
and the run that stores proposals."""

from middo_core.refine.operators import AXIS_OPERATOR, OPERATORS, Operator, operator_for
from middo_core.refine.parse import Parsed, parse_response, parse_rewrite
from middo_core.refine.pipeline import proposal_id, refine
from middo_core.refine.report import RefineOptions, RefineReport

__all__ = ["AXIS_OPERATOR", "OPERATORS", "Operator", "Parsed", "RefineOptions",
           "RefineReport", "operator_for", "parse_response", "parse_rewrite",
           "proposal_id", "refine"]
