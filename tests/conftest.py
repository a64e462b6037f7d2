"""Shared fixtures: the tiny diffusers pipelines of ``tests/tiny_pipelines.py`` and ``tests/tiny_flow.py``,
written once per session."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """name -> path of every tiny pipeline, UNet and LoRA (:func:`tiny_pipelines.build_all`)."""
    from tiny_pipelines import build_all

    return build_all(tmp_path_factory.mktemp("pipelines"))


@pytest.fixture(scope="session")
def flow_tiny(tmp_path_factory):
    """name -> path of every tiny FLUX / SD3 pipeline (:func:`tiny_flow.build_all`)."""
    from tiny_flow import build_all

    return build_all(tmp_path_factory.mktemp("flow-pipelines"))
