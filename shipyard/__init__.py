"""shipyard: take a model from training to production with evidence."""

__version__ = "0.1.0"
