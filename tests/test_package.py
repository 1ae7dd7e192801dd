"""Packaging guards: the four packages resolve inside the project, `import edge_msa` needs no torch,
and the CLI answers --help and bad flags the documented way."""
from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["edge_msa", "edge_msa.compress", "edge_msa.export", "edge_msa.benchmarks"])
def test_packages_resolve_inside_the_project(name):
    module = importlib.import_module(name)
    assert Path(module.__file__).resolve().is_relative_to(ROOT)


@pytest.mark.slow
def test_installed_package_has_one_namespace(tmp_path):
    """A non-editable install puts compress/export/benchmarks under edge_msa, never at the top level."""
    target = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                           "--target", str(target), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert {"compress", "export", "benchmarks"}.isdisjoint(p.name for p in target.iterdir())
    for sub in ("compress", "export", "benchmarks"):
        assert (target / "edge_msa" / sub / "__init__.py").is_file()
    code = ("import importlib.util, sys; sys.path[:0] = [sys.argv[1]]; "
            "print(importlib.util.find_spec('compress') is None, importlib.util.find_spec('edge_msa.export').origin)")
    out = subprocess.run([sys.executable, "-c", code, str(target)], capture_output=True, text=True, timeout=120,
                         cwd=tmp_path).stdout.split()
    assert out[0] == "True" and out[1].startswith(str(target))


def _run_without_torch(code: str) -> subprocess.CompletedProcess:
    blocker = "import sys; sys.modules['torch'] = None\n"
    return subprocess.run([sys.executable, "-c", blocker + code], capture_output=True, text=True, timeout=120)


def test_import_edge_msa_works_without_torch():
    proc = _run_without_torch("import edge_msa, edge_msa.metrics, edge_msa.spec, edge_msa.data; "
                              "print(edge_msa.__version__)")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip()


def test_cli_help_works_without_torch():
    proc = _run_without_torch("from edge_msa.cli import main; main(['--help'])")
    assert "usage: edge-msa" in proc.stdout


def test_building_the_parser_imports_no_runtime():
    """Every `edge-msa` call, `--help` included, builds every subcommand's parser: serve's defaults (serve.config)
    brought the request parsing and with it the runtime predictor and its front ends, ~25 ms a call, and export's
    format table the whole exporter, ~25 ms more."""
    code = ("import sys; from edge_msa.cli import build_parser; build_parser(); print(' '.join(m for m in sys.modules "
            "if m.startswith(('edge_msa.runtime.pred', 'edge_msa.serve.', 'edge_msa.export.', 'edge_msa.features.'))))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert sorted(proc.stdout.split()) == ["edge_msa.export.formats", "edge_msa.serve.config"]

def test_unknown_flag_is_one_line_error_exit_2():
    proc = subprocess.run([sys.executable, "-m", "edge_msa", "--no-such-flag"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:")


def test_a_subcommand_flag_typo_points_at_that_subcommand_and_its_closest_flag(capsys):
    from edge_msa.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["export", "student.pt", "--opst", "16", "--out", "b"])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and len(err.splitlines()) == 1
    assert "--opst 16 (did you mean --opset?)" in err and err.endswith("see 'edge-msa export --help'")


def test_a_command_without_its_action_is_one_line_naming_that_commands_help(capsys):
    """`edge-msa feedback` alone (no `export`) found no handler and printed the top-level help with exit code 2 and
    no error line, so a user was not told that an action was missing nor which command's --help lists it."""
    from edge_msa.cli import build_parser, main

    grouping = [p.prog.split()[1:] for p in _parsers(build_parser())[1:]
                if any(isinstance(a, argparse._SubParsersAction) for a in p._actions)]
    assert grouping == [["feedback"]]
    for words in grouping:
        with pytest.raises(SystemExit) as exc:
            main(words)
        captured = capsys.readouterr()
        assert exc.value.code == 2 and captured.out == ""
        assert captured.err == (f"error: the following arguments are required: ACTION; "
                                f"see 'edge-msa {' '.join(words)} --help'\n")


def test_a_missing_or_unknown_command_is_one_error_line_naming_the_commands(capsys):
    """Bare `edge-msa` printed the help with exit code 2 and no error line, unlike every other bad call; an unknown
    command had argparse's own wording (`invalid choice: 'trian' (choose from 'pipeline', ...)`), not the closest
    command and the expected ones of every other word. --help and --version still exit 0."""
    from edge_msa.cli import SUBCOMMANDS, main

    commands = ", ".join(SUBCOMMANDS)
    for argv, says in (([], f"a command is required; expected one of {commands}"),
                       (["trian"], f"argument COMMAND: invalid choice 'trian' (did you mean 'train'?); expected one "
                                   f"of {commands}"),
                       (["nosuch"], f"argument COMMAND: invalid choice 'nosuch'; expected one of {commands}")):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        captured = capsys.readouterr()
        assert exc.value.code == 2 and captured.out == ""
        assert captured.err.splitlines()[-1] == f"error: {says}; see 'edge-msa --help'"
        assert captured.err.splitlines()[:-1] == ([] if argv else ["usage: edge-msa [-h] [--version] COMMAND ..."])
    for flag, says in (("--help", "usage: edge-msa"), ("--version", "edge-msa ")):
        with pytest.raises(SystemExit) as exc:
            main([flag])
        assert exc.value.code == 0 and capsys.readouterr().out.startswith(says)


def test_every_word_choice_is_read_in_any_case_and_a_wrong_word_is_one_line(capsys):
    """argparse's choices compared words as typed: `eval --split TEST`, `bench --meter NVML`, `serve --log-level INFO`
    and `train --text-encoder FROZEN` were refused while compress took `--share DEPTH`. Every flag with choices now
    reads them by the one rule (cli.one_of), and --help still lists the words."""
    from edge_msa.cli import build_parser, main, one_of

    word = one_of(["one", "two"])["type"]
    flagged = [(p.prog, a) for p in _parsers(build_parser()) for a in p._actions
               if a.choices and not isinstance(a, argparse._SubParsersAction)]
    assert len(flagged) >= 9  # train/pipeline --text-encoder, eval/bench --split, --backend x3, --meter, ...
    for prog, action in flagged:
        assert action.type.__qualname__ == word.__qualname__, (prog, action.option_strings)
        assert [action.type(w.upper()) for w in action.choices] == list(action.choices), prog
    parser = build_parser()
    args = parser.parse_args(["export", "s.pt", "--format", "engine", "--trt-precision", "FP16"])
    assert args.trt_precision == "fp16"
    assert parser.parse_args(["predict", "b", "--backend", "TensorRT"]).backend == "tensorrt"
    with pytest.raises(SystemExit) as exc:
        main(["eval", "b", "--split", "Tset"])
    assert exc.value.code == 2 and capsys.readouterr().err == (
        "error: argument --split: invalid choice 'Tset' (did you mean 'test'?); expected one of train, valid, test; "
        "see 'edge-msa eval --help'\n")
    with pytest.raises(SystemExit):
        main(["serve", "b", "--log-level", "verbose"])
    assert capsys.readouterr().err.startswith("error: argument --log-level: invalid choice 'verbose'; expected one "
                                              "of critical, error, warning, info, debug; see")
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    assert "--split {train,valid,test}" in capsys.readouterr().out


def test_every_data_flags_default_names_edge_msa_data_first():
    """train, pipeline, eval, bench and compress said --data defaults to ../shared/data/mosi/...: a user who had set
    $EDGE_MSA_DATA, which the commands read first (paths.default_data_root), was told it was not used."""
    from edge_msa.cli import DEFAULT_DATA, build_parser
    from edge_msa.paths import DATA_ENV, SHARED_DATA

    assert DEFAULT_DATA.startswith(f"${DATA_ENV}/")  # the one definition: the variable first, as the commands read
    helps = {p.prog: a.help for p in _parsers(build_parser()) for a in p._actions if "--data" in a.option_strings}
    defaults = {prog: text for prog, text in helps.items() if SHARED_DATA in text}
    assert len(defaults) == 5
    assert [prog for prog, text in defaults.items() if DEFAULT_DATA not in text] == []


def test_a_negative_value_that_float_reads_is_a_value_not_a_flag():
    """argparse's negative-number test knows only digits, so `--max-media-s -inf` and `--lr -1e-3` were refused as
    "expected one argument" before the real check could say what was wrong with them; only `--flag=-inf` got there."""
    import math

    from edge_msa.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["serve", "b", "--max-media-s", "-inf"]).max_media_seconds == -math.inf
    assert math.isnan(parser.parse_args(["predict", "b", "--max-media-s", "-NaN"]).max_media_seconds)
    assert parser.parse_args(["train", "--lr", "-1e-3", "--seeds", "0", "-1"]).lr == -1e-3
    assert parser.parse_args(["compress", "t.pt", "--max-drop", "-.5"]).max_drop == -0.5
    with pytest.raises(SystemExit), contextlib.redirect_stderr(io.StringIO()):
        parser.parse_args(["predict", "b", "--max-media-s", "-x"])  # not a number: still read as a flag


def test_the_media_limit_flag_is_defined_once_for_predict_featurize_and_serve():
    """--max-media-s had three argparse definitions (predict, featurize, serve's limit table), each with its own help
    (serve's said nothing of decoding, predict's "as in serve") and dest (max_media_s beside serve's
    max_media_seconds); one now (cli.add_media_limit_flag), each command saying what it does with a longer file."""
    from edge_msa.cli import Typed, build_parser
    from edge_msa.features import MAX_MEDIA_SECONDS

    found = {p.prog.split()[-1]: a for p in _parsers(build_parser()) for a in p._actions
             if "--max-media-s" in a.option_strings}
    assert sorted(found) == ["featurize", "predict", "serve"]
    assert {(a.dest, a.default, a.type, a.metavar) for a in found.values()} == {
        ("max_media_seconds", MAX_MEDIA_SECONDS, Typed, "MAX_MEDIA_S")}
    for action in found.values():
        assert action.help.startswith("longest audio / video file in seconds, refused before decoding")
        assert action.help.endswith("(default 30, shared by predict, featurize and serve; inf: no limit)")


COMMAND = re.compile(r"(^|&&)\s*(\w+=\S*\s+)*edge-msa ")  # a shell line that runs edge-msa (not prose naming it)


def _example_lines(text: str) -> list[str]:
    """Each `edge-msa ...` command in `text` (continued lines joined, `# comments` cut, `a && edge-msa b` split)."""
    commands = []
    for line in text.replace("\\\n", " ").splitlines():
        tokens = shlex.split(line, comments=True) if COMMAND.search(line) else []
        while "edge-msa" in tokens:
            tokens = tokens[tokens.index("edge-msa"):]
            end = tokens.index("&&") if "&&" in tokens else len(tokens)
            commands.append(shlex.join(tokens[:end]))
            tokens = tokens[end:]
    return commands


def _parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """`parser` and every (sub)subcommand parser under it."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return [parser] + [q for a in subs for p in a.choices.values() for q in _parsers(p)]


def _documented_commands() -> list[tuple[str, str]]:
    """(where, command) for every example in a subcommand's --help and in the README's code blocks."""
    from edge_msa.cli import build_parser

    found = [(f"{p.prog} --help", c) for p in _parsers(build_parser()) for c in _example_lines(p.epilog or "")]
    blocks = re.findall(r"^ *```[a-z]*\n(.*?)^ *```", (ROOT / "README.md").read_text(encoding="utf-8"), re.S | re.M)
    return found + [("README.md", c) for block in blocks for c in _example_lines(block)]


def test_every_documented_command_parses():
    """A README or --help example that names a flag the command lacks (or spells it otherwise) fails here, before
    a user copies it."""
    from edge_msa.cli import build_parser

    parser, failed, commands = build_parser(), [], _documented_commands()
    for p in _parsers(parser):
        p.allow_abbrev = False  # a shortened flag in an example is a misspelling, not a prefix to expand
    for where, command in commands:
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                parser.parse_args(shlex.split(command)[1:])
        except SystemExit as exc:
            if exc.code:
                failed.append(f"{where}: {command}\n    {err.getvalue().strip()}")
    assert len(commands) > 50 and not failed, "\n".join(failed)
