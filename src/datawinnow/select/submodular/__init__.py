"""Submodular subset selection: objectives decoupled from optimizers (the apricot habit).

An *objective* owns a kernel and the current state of a selection (``gains``, ``add``, ``value``);
an *optimizer* (``naive_greedy``, ``lazy_greedy``, ``stochastic_greedy``) only asks it for marginal
gains and tells it what was picked, so any optimizer runs on any objective.
"""

from .objectives import (
    FacilityLocation,
    FacilityLocationConditionalGain,
    FacilityLocationMutualInformation,
    Objective,
)
from .optimizers import OPTIMIZERS, GreedyResult, lazy_greedy, maximize, naive_greedy, stochastic_greedy

__all__ = [
    "FacilityLocation", "FacilityLocationConditionalGain", "FacilityLocationMutualInformation", "GreedyResult",
    "OPTIMIZERS", "Objective", "lazy_greedy", "maximize", "naive_greedy", "stochastic_greedy",
]
