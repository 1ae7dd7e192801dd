"""Cold start on the device: a kiosk or robot starts a process, loads a bundle and answers its first request, so
what `edge_msa.load` imports and builds before that answer is paid on every start."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def _modules_after(code: str) -> set[str]:
    """The edge_msa modules a fresh process holds after running `code`."""
    script = f"import sys\n{code}\nprint(' '.join(m for m in sys.modules if m.startswith('edge_msa')))"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return set(proc.stdout.split())


def test_loading_a_bundle_and_predicting_imports_no_dataset_reader(token_bundle: Path):
    """load's file check hashed with data.lineage's file_sha256, which imported the dataset readers (edge_msa.data:
    its loader, formats, assemble, zipfile), ~10 ms of every cold start that the device path has no use for."""
    modules = _modules_after(f"import edge_msa\np = edge_msa.load({str(token_bundle)!r})\n"
                             "p.predict(text='the movie was good')")
    assert "edge_msa.runtime.manifest" in modules
    assert not {m for m in modules if m == "edge_msa.data" or m.startswith("edge_msa.data.")}


def test_edge_msa_predict_builds_only_its_own_parser(token_bundle: Path):
    """Every `edge-msa` call registered all eleven subcommands, importing their modules (bench's meters, serve's
    config, train's model registry), about 30 ms of each `edge-msa predict` that answers one sentence."""
    modules = _modules_after(f"from edge_msa.cli import main\nmain(['predict', {str(token_bundle)!r}, '--text', "
                             "'the movie was good'])")
    assert "edge_msa.cli.predict" in modules
    others = {m for m in modules if m.startswith(("edge_msa.cli.", "edge_msa.benchmarks", "edge_msa.serve",
                                                  "edge_msa.models", "edge_msa.data"))}
    assert others == {"edge_msa.cli.predict"}


def test_help_and_a_mistyped_command_still_see_every_command(capsys):
    """A command line that names no subcommand, or none that exists, is parsed with all of them registered: the help
    lists them and a typo is told the closest."""
    from edge_msa.cli import SUBCOMMANDS, main

    with pytest.raises(SystemExit):
        main(["--help"])
    listed = capsys.readouterr().out
    assert all(name in listed for name in SUBCOMMANDS)
    with pytest.raises(SystemExit) as exited:
        main(["predcit", "bundle"])
    assert exited.value.code == 2
    assert "invalid choice 'predcit' (did you mean 'predict'?" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--help", "predict"], ["-h", "train"], ["--he", "predict"]])
def test_top_level_help_before_a_command_lists_every_command(capsys, argv):
    """`edge-msa --help predict` prints the top-level help (argparse acts on --help before it reads the command): with
    the parser built for the first word that is no flag, it listed predict alone, as if that were the only command."""
    from edge_msa.cli import SUBCOMMANDS, main

    with pytest.raises(SystemExit):
        main(argv)
    listed = capsys.readouterr().out
    assert all(name in listed for name in SUBCOMMANDS)


@pytest.mark.parametrize("word", ["--", "-1"])
def test_a_word_argparse_reads_as_the_command_is_told_every_command(capsys, word):
    """argparse takes `--` and a negative number as the command word (`edge-msa -- predict`): refused, the line said
    "expected one of predict", the command after it, where every command is one."""
    from edge_msa.cli import SUBCOMMANDS, main

    with pytest.raises(SystemExit) as exited:
        main([word, "predict", "bundle"])
    assert exited.value.code == 2
    assert f"expected one of {', '.join(SUBCOMMANDS)};" in capsys.readouterr().err
