"""Longest responses (Chasing Random's strong, cheap baseline)."""

from __future__ import annotations

from ...registry import METHODS
from ..base import ScoreTopK


@METHODS.register
class LongestMethod(ScoreTopK):
    name = "longest"
    description = "The longest responses (unit=chars or tokens); ties broken by id."
    defaults = {"unit": "chars"}
    scorer = "length"
    scorer_params = ("unit",)
