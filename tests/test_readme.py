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


def test_architecture_doc_shows_the_stage_table_and_every_config_key():
    import typing

    from pydantic import BaseModel

    from hybrid_asd.config import Config
    from hybrid_asd.stages import STAGES

    doc = (ROOT / "docs" / "architecture.md").read_text()
    for stage in STAGES:
        assert f"| {stage.number} | `{stage.name}` | {', '.join(stage.reads)} |" in doc, stage.name
        assert f"`{stage.run}`" in doc
    configs = doc[doc.index("## Configs"):doc.index("## Modules")]

    def fields(model: type[BaseModel]):
        for name, field in model.model_fields.items():
            yield name
            for arg in (field.annotation, *typing.get_args(field.annotation)):
                for inner in (arg, *typing.get_args(arg)):
                    if isinstance(inner, type) and issubclass(inner, BaseModel):
                        yield from fields(inner)

    def shown(name: str) -> bool:  # as a key, a dotted part of one, or one of a list of keys in a row
        return any(form in configs for form in (f"`{name}`", f"`{name}.", f".{name}`", f".{name}.", f" `{name}`,"))

    missing = sorted({name for name in fields(Config) if not shown(name)})
    assert missing == [], f"docs/architecture.md's config table lacks {missing}"
