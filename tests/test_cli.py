"""The command surface promised in ../shared/CLI.md exists, and every subcommand answers --help."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from scratchllm.cli import build_parser, main

CLI_DOC = Path(__file__).resolve().parents[2] / "shared" / "CLI.md"


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


def _documented() -> set[str]:
    block = CLI_DOC.read_text().split("```")[1]
    found = set()
    for line in block.splitlines():
        found.update(re.findall(r"^scratchllm ([a-z][a-z-]*(?: [a-z][a-z-]*)?)", line))
    return found


@pytest.mark.skipif(not CLI_DOC.exists(), reason="../shared/CLI.md not beside the checkout")
def test_every_documented_command_is_registered():
    missing = _documented() - _registered()
    assert not missing, f"commands in CLI.md but not in the CLI: {sorted(missing)}"


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


def test_quickstart_with_a_missing_corpus_fails_before_writing(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["quickstart", "--corpus", str(tmp_path / "nope.txt"), "--out", str(out)]) == 2
    assert "not found" in capsys.readouterr().err
    assert not out.exists()
