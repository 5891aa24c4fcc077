"""How the suite is split between pytest-xdist's two workers (tests/conftest.py): by module, and
the modules that start stacks or servers as one unit."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import SERVER_MODULES, _work_unit

ROOT = Path(__file__).parents[1]


def test_every_server_module_exists():
    # a renamed module would silently leave the unit and run beside another stack again
    assert sorted(m for m in SERVER_MODULES if not (ROOT / m).is_file()) == []


def test_a_test_goes_with_its_module_or_with_the_servers():
    assert _work_unit("tests/abc/test_tunes.py::test_x[a::b]") == "tests/abc/test_tunes.py"
    assert _work_unit("tests/infra/test_stack.py::test_stack_up_status_down") == "servers"
    assert _work_unit("tests/infra/test_stack_postgres.py::test_y") == "servers"
    assert _work_unit("tests/infra/test_failures.py::test_z") == "tests/infra/test_failures.py"
