"""shipyard_serving/compat.py: what the serving layer adds around BentoML's internals, checked on
the installed BentoML (an internal that moved fails here, naming itself)."""

from __future__ import annotations

import pytest

from shipyard_serving.compat import (_numbers_only, bound_dependency_keepalive, close_replaced_dependency_sessions_later,
                                     retry_dependency_disconnects)


@pytest.mark.parametrize("value", [[[1, 2.5, -3e300]], [], None])
def test_numbers_pass(value):
    _numbers_only(value, "x", ValueError)


@pytest.mark.parametrize(("value", "says"), [([[False, 1]], "not false"), ([["1.5"]], 'not "1.5"'),
                                             ([[None, 1]], "not null"), ([[{"a": 1}]], "not {")])
def test_what_numpy_would_coerce_is_refused_naming_the_field(value, says):
    with pytest.raises(ValueError, match=f"input_series: every element must be a number, {says}"):
        _numbers_only(value, "input_series", ValueError)


def test_the_dependency_client_is_patched_once_on_this_bentoml():
    from _bentoml_impl.client.proxy2 import AsyncClient, SessionManager

    for _ in range(2):
        bound_dependency_keepalive()
        close_replaced_dependency_sessions_later()
        retry_dependency_disconnects()
    assert SessionManager._make_client._shipyard_bounded
    assert SessionManager.get_session._shipyard_later
    assert AsyncClient._call._shipyard_retried


def test_a_replaced_dependency_session_is_closed_after_its_calls_not_under_them():
    """BentoML's SessionManager replaces its session every `max_requests` calls; the one it
    replaces stays open for the client's timeout (calls may still use it), then closes."""
    import asyncio

    from _bentoml_impl.client.proxy2 import SessionManager

    close_replaced_dependency_sessions_later()

    async def main() -> tuple[bool, bool, bool]:
        manager = SessionManager("http://127.0.0.1:9", timeout=0.3, headers={}, max_requests=1)
        first = await manager.get_session()
        await manager.get_session()  # within max_requests: the same session
        replacing = await manager.get_session()  # past it: replaced
        open_after_replacement = not first.closed and replacing is not first
        await asyncio.sleep(0.6)
        closed_later = first.closed
        await manager.close()
        return open_after_replacement, closed_later, replacing.closed

    open_after_replacement, closed_later, current_closed_on_close = asyncio.run(main())
    assert open_after_replacement, "the replaced session was closed under the calls still using it"
    assert closed_later, "the replaced session was never closed"
    assert current_closed_on_close


def test_every_borrowed_internal_is_there_on_the_releases_installed():
    from shipyard_serving.compat import check_borrowed

    check_borrowed()


def test_an_untested_release_or_a_moved_internal_is_named_with_the_fix(monkeypatch):
    from shipyard_serving import compat

    monkeypatch.setattr(compat, "TESTED", (("bentoml", "9.0", "10.0"),))
    monkeypatch.setattr(compat, "BORROWED", (("bentoml._internal.utils", "no_such_helper"),))
    with pytest.raises(compat.IncompatibleRelease) as raised:
        compat.check_borrowed()
    said = str(raised.value)
    assert "is not a release shipyard's serving layer was tested on (>=9.0,<10.0)" in said
    assert "pip install 'bentoml>=9.0,<10.0'" in said
    assert "bentoml._internal.utils.no_such_helper is gone" in said


PRIVATE = ("bentoml._internal", "_bentoml_impl", "_bentoml_sdk", "uvicorn.protocols", "uvicorn.lifespan")


def test_only_compat_imports_bentoml_and_uvicorn_internals():
    """The fence: one module borrows internals (and `shipyard build` checks each of them); every
    other module of the toolkit and the serving layer asks compat for them."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    trespassers = []
    for path in [*(root / "shipyard").rglob("*.py"), *(root / "shipyard_serving").glob("*.py")]:
        if path.name == "compat.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            trespassers += [f"{path.relative_to(root)}:{node.lineno} {n}" for n in names if n.startswith(PRIVATE)]
    assert not trespassers, "import these through shipyard_serving.compat:\n" + "\n".join(trespassers)


def test_every_borrowed_internal_exists_on_the_installed_releases():
    from shipyard_serving.compat import BORROWED, check_borrowed

    check_borrowed()  # raises naming each internal that moved and each release outside TESTED
    assert len(BORROWED) == len(set(BORROWED))


def test_an_internal_not_listed_is_refused():
    from shipyard_serving.compat import _borrow

    with pytest.raises(ValueError, match="not in BORROWED"):
        _borrow("bentoml._internal.utils", "something_else")


def test_each_borrowed_internal_is_found_in_a_fresh_interpreter():
    """A submodule is an attribute of its package only once something imported it: each accessor
    must work in a process that imported nothing else first (a Bento's server is one)."""
    import subprocess
    import sys

    from shipyard_serving.compat import BORROWED

    code = ("from shipyard_serving.compat import BORROWED, _borrow\n"
            "for module, name in BORROWED:\n    assert _borrow(module, name) is not None, (module, name)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert BORROWED
