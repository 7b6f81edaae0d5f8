"""The fraud scorer as plain BentoML serves it: the project's service without shipyard's serving
layer (no error contract, admission control or worker fixes), for the benchmark's BentoML row."""

from service.service import FraudScorer

__all__ = ["FraudScorer"]
