"""The corpus projects whose requirements allow one venv between them (test_corpus.py says what
each uses of BentoML), made once from all their requirements and shipyard from this repository."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.test_corpus import PROJECTS, _venv, take_through

pytestmark = pytest.mark.server
SHARED = {"media_tools": "media_tools", "summarizer": "summarization", "house_prices": "house_prices",
          "image_filters": "image-filters", "sentence_embeddings": "sentence_embeddings",
          "churn_predictor": "churn_predictor", "phrasebook": "phrasebook"}  # project -> the Bento's name


@pytest.fixture(scope="module")
def shared_venv(tmp_path_factory) -> Path:
    return _venv(tmp_path_factory.mktemp("corpus") / "shared-venv",
                 *(PROJECTS / name / "requirements.txt" for name in SHARED))  # those that have one


@pytest.mark.parametrize("project", list(SHARED))
def test_a_project_sharing_a_venv_goes_from_init_to_promotion(project, shared_venv, tmp_path):
    take_through(project, SHARED[project], shared_venv, tmp_path)
