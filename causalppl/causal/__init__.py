"""Causal queries over SCMs: effects, counterfactuals, identification, fitting."""

from causalppl.causal.attribution import (
    arrow_strength,
    attribute_anomalies,
    distribution_change,
    intrinsic_causal_influence,
)
from causalppl.causal.causation import (
    Causation,
    CausationBounds,
    causation_bounds,
    probabilities_of_causation,
)
from causalppl.causal.counterfactual import CounterfactualError, CounterfactualResult, counterfactual
from causalppl.causal.discrete import exact_distribution
from causalppl.causal.estimate import Estimate, adjusted_slope, iv_slope
from causalppl.causal.fit import ConvergenceWarning
from causalppl.causal.identify import (
    Check,
    Estimand,
    Hedge,
    Identification,
    NotIdentifiable,
    backdoor_sets,
    check_backdoor,
    check_frontdoor,
    check_instrument,
    d_separated,
    frontdoor_sets,
    identify,
    instruments,
    minimal_adjustment,
    optimal_adjustment,
)
from causalppl.causal.learn import CategoricalTable, LinearGaussian, Logistic, MLPGaussian, from_graph
from causalppl.causal.mediation import MediationResult, mediation
from causalppl.causal.queries import (
    Distribution,
    EffectResult,
    QueryResult,
    Summary,
    association,
    ate,
    interventional,
    posterior_samples,
)
from causalppl.causal.refute import (
    EffectEstimate,
    FalsifyResult,
    IndependenceTest,
    RefuteResult,
    backdoor_estimate,
    data_subset,
    falsify,
    placebo_treatment,
    random_common_cause,
    refute,
    unobserved_common_cause,
)

__all__ = [
    "EffectEstimate", "FalsifyResult", "IndependenceTest", "RefuteResult", "backdoor_estimate", "data_subset",
    "falsify", "placebo_treatment", "random_common_cause", "refute", "unobserved_common_cause",
    "Causation", "CausationBounds", "MediationResult", "causation_bounds", "mediation",
    "probabilities_of_causation",
    "arrow_strength", "attribute_anomalies", "distribution_change", "intrinsic_causal_influence",
    "CategoricalTable", "Check", "ConvergenceWarning", "CounterfactualError", "CounterfactualResult",
    "Distribution", "EffectResult", "Estimand", "Estimate", "Hedge", "Identification", "NotIdentifiable",
    "exact_distribution", "minimal_adjustment", "optimal_adjustment", "LinearGaussian", "Logistic",
    "MLPGaussian", "QueryResult",
    "Summary", "adjusted_slope", "association", "ate", "backdoor_sets", "check_backdoor",
    "check_frontdoor", "check_instrument", "counterfactual", "d_separated", "from_graph",
    "frontdoor_sets", "identify", "instruments", "interventional", "iv_slope", "posterior_samples",
]
