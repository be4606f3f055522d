"""The command line as a user meets it: `pop-rok`, `python -m poprok` and `python pop_rok.py`, inside and outside the
checkout; bad invocations print usage and exit non-zero, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ("sample", "validate", "build", "export", "push", "show")
INSTALLED = Path(sys.executable).with_name("pop-rok")


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def installed_or_skip() -> None:
    """CI installs the package (`pip install .`); a checkout used without installing it skips these."""
    if not INSTALLED.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{INSTALLED} is missing: CI must `pip install .` (scripts/setup_env.sh)")
        pytest.skip("the package is not installed in this environment (pip install .)")


@pytest.mark.parametrize(
    "entry",
    [[sys.executable, str(ROOT / "pop_rok.py")], [sys.executable, "-m", "poprok"]],
    ids=["pop_rok.py", "python -m poprok"],
)
def test_help_lists_every_command(entry):
    done = run([*entry, "--help"], ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: pop-rok")
    for command in COMMANDS:
        assert f"    {command} " in done.stdout, command


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        ([], "the following arguments are required: COMMAND"),
        (["bogus"], "invalid choice: 'bogus'"),
        (["sample"], "the following arguments are required: out_dir"),
        (["show", "x", "--rows", "many"], "argument --rows: invalid int value: 'many'"),
    ],
    ids=["no command", "unknown command", "missing argument", "bad value"],
)
def test_bad_invocations_print_usage_and_exit_2(args, complaint):
    done = run([sys.executable, str(ROOT / "pop_rok.py"), *args], ROOT)
    assert done.returncode == 2
    assert done.stderr.startswith("usage: pop-rok") and complaint in done.stderr
    assert "Traceback" not in done.stderr


def test_a_problem_is_one_error_line_and_exit_1(tmp_path):
    done = run([sys.executable, str(ROOT / "pop_rok.py"), "validate", "--data-dir", str(tmp_path / "nowhere")], ROOT)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [f"error: data_dir {str(tmp_path / 'nowhere')!r} is not a folder"]


def test_the_installed_command_works_outside_the_checkout(tmp_path):
    installed_or_skip()
    done = run([str(INSTALLED), "sample", str(tmp_path / "out"), "--loops", "1"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "pop_rok_drm_id_001_json.tar.gz",
        "pop_rok_drm_id_001_wav.tar.gz",
    ]
    imported = run(
        [sys.executable, "-c", "import pop_rok, poprok; print(pop_rok.__file__, poprok.__file__)"], tmp_path
    )
    assert imported.returncode == 0, imported.stderr
    assert all("site-packages" in Path(path).parts for path in imported.stdout.split()), imported.stdout
