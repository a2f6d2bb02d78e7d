"""README's two commands stay true: CI runs exactly the test command the README gives."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci_lines = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines()]
    command = next(ln for ln in ci_lines if ln.startswith("bash scripts/setup.sh"))
    assert command in readme
    assert "pytest" in command


def test_readme_main_job_command_exists_as_cli():
    from hybrid_asd.cli import build_parser

    readme = (ROOT / "README.md").read_text()
    assert "hybrid-asd demo" in readme
    commands = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for name in commands:
        assert f"hybrid-asd {name}" in readme, f"README.md has no line for 'hybrid-asd {name}'"
