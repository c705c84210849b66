"""The command surface promised in ../shared/CLI.md exists, and every subcommand answers --help."""

from __future__ import annotations

import pytest

from scratchllm.cli import build_parser, main


def _registered() -> set[str]:
    """Every command path the parser knows, e.g. {"train", "tokenizer train", ...}."""
    paths: set[str] = set()

    def walk(parser, prefix: str) -> None:
        for action in parser._actions:
            for name, child in getattr(action, "choices", {}).items() if hasattr(action, "_name_parser_map") else []:
                paths.add(f"{prefix}{name}")
                walk(child, f"{prefix}{name} ")

    walk(build_parser(), "")
    return paths


@pytest.mark.parametrize("command", sorted(_registered()))
def test_every_subcommand_answers_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*command.split(), "--help"])
    assert exit_info.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_unknown_command_is_one_line_and_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["no-such-command"])
    assert exit_info.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
