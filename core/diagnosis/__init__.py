"""Training diagnosis: rules that read a run's metric series the way a practitioner reads
curves and say what is wrong, on what evidence, and what to change in the spec. Pure: no
torch, no database, no worker; docs/diagnosis.md documents every rule."""

from core.diagnosis.divergence import DivergenceWatch, diverged_message
from core.diagnosis.engine import Diagnosis
from core.diagnosis.facts import RunFacts, facts_from_spec
from core.diagnosis.finding import Action, Finding

__all__ = ["Action", "Diagnosis", "DivergenceWatch", "Finding", "RunFacts", "diverged_message",
           "facts_from_spec"]
