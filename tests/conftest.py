"""Fixtures shared by several test files (the helper modules beside them build the worlds)."""
from __future__ import annotations

import pytest

import _eval_world


@pytest.fixture(scope="session", autouse=True)
def eval_cache(tmp_path_factory):
    """Evaluation's dataset cache (domain/engagement models, real statistics) in a temp folder, not ~/.cache:
    tests leave nothing behind (subprocesses inherit it)."""
    mp = pytest.MonkeyPatch()
    path = tmp_path_factory.mktemp("reelgan-cache")
    mp.setenv("REELGAN_CACHE", str(path))
    yield path
    mp.undo()


@pytest.fixture(scope="module")
def one_thread():
    """Tiny networks: on 2 shared cores a second intra-op thread mostly spins; see _eval_world.one_thread."""
    with _eval_world.one_thread():
        yield


@pytest.fixture(scope="module")
def eval_world():
    """The small evaluation world (clips, embeddings, domain classifier), built once per test process."""
    return _eval_world.eval_world()
