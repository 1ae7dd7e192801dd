"""The --help examples as one chain: users copy them in turn, so what an example reads is what another writes (or the
real data beside the checkout). test_package checks that each example parses; these check where they point, and
that what --help says a command prints is what it prints."""
from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

from conftest import needs_data
from test_package import ROOT, _example_lines, _parsers

from edge_msa.cli.pipeline import BUNDLES  # the bundles `edge-msa pipeline` writes under its --out


def _help_examples() -> list[tuple[str, argparse.Namespace]]:
    """(command as written, its parsed arguments) for every `edge-msa ...` example in a subcommand's --help."""
    from edge_msa.cli import build_parser

    parser = build_parser()
    commands = [c for p in _parsers(parser) for c in _example_lines(p.epilog or "")]
    return [(c, parser.parse_args(shlex.split(c)[1:])) for c in commands]


def _written(examples: list[tuple[str, argparse.Namespace]]) -> set[str]:
    """Every path an example writes: its --out, and each bundle of a pipeline's --out; export's default --out too,
    which an example may leave implied."""
    from edge_msa.cli import build_parser

    paths = {Path(build_parser().parse_args(["export", "x.pt"]).out).as_posix()}
    for _, args in examples:
        out = getattr(args, "out", None)
        if out:
            paths.add(Path(out).as_posix())
        if args.command == "pipeline":
            paths.update((Path(args.out) / "bundles" / name).as_posix() for name, _ in BUNDLES)
    return paths


def _bundles_read(args: argparse.Namespace) -> list[str]:
    """The bundle folders an example runs (info's path when it is not a checkpoint)."""
    if args.command == "bench":
        return list(args.bundles)
    if args.command == "info":
        return [] if args.path.endswith(".pt") else [args.path]
    return [args.bundle] if args.command in ("predict", "eval", "serve") else []


def test_every_bundle_a_help_example_runs_is_one_an_example_writes():
    """bench's examples ran student_bundle/ and teacher_bundle/, which no example writes (export's write
    bundles/student and bundles/teacher, pipeline's runs/mosi/bundles/...): copied in turn, they were 'not found'."""
    examples = _help_examples()
    written = _written(examples)
    unknown = [f"{command}: {bundle}" for command, args in examples for bundle in _bundles_read(args)
               if Path(bundle).as_posix() not in written]
    assert not unknown, "\n".join(unknown)


@needs_data
def test_every_help_example_data_file_exists_or_is_written_by_an_example():
    """export's engine example read --data mosi.npz and pipeline's gtf example mosi_utterance_std.npz, files no
    example writes and the data folder does not hold under those names (the other examples give the real path,
    ../shared/data/mosi/mosi_utterance_std.npz, relative to the checkout as the README's commands are)."""
    examples = _help_examples()
    written = _written(examples)
    missing = [f"{command}: --data {args.data}" for command, args in examples if getattr(args, "data", None)
               and Path(args.data).as_posix() not in written and not (ROOT / args.data).exists()]
    assert not missing, "\n".join(missing)


def test_predict_help_names_every_field_of_its_output_line():
    """predict --help listed score, polarity, ran, skipped, ms and load_ms, but not warnings, which every line (and
    every REST answer) carries: each field of Prediction, the line's one source, is named there."""
    from dataclasses import fields

    from edge_msa.cli import build_parser
    from edge_msa.runtime.predictor import Prediction

    predict = next(p for p in _parsers(build_parser()) if p.prog.endswith(" predict"))
    output = predict.epilog.split("Each output line has", 1)[1]
    assert [f.name for f in fields(Prediction) if not re.search(rf"\b{f.name}\b", output)] == []


def test_predict_help_says_a_bundle_with_its_own_text_encoder_takes_a_sentence_or_token_ids(token_bundle, tmp_path,
                                                                                              capsys):
    """predict --help offered a transcript to "bundles with the MiniLM text front end" only, and a .npy as (L, d)
    features: the main job's students tokenize the transcript themselves and read a .npy as token ids, so a user of
    one was told it took no sentence and nothing of what its .npy holds. What the help says, the CLI does."""
    import json

    import numpy as np
    from tokenizers import Tokenizer

    from edge_msa.cli import build_parser, main

    predict = next(p for p in _parsers(build_parser()) if p.prog.endswith(" predict"))
    text_entry = " ".join(predict.epilog.split('--text "..."', 1)[1].split("--audio", 1)[0].split())
    assert "any bundle" in text_entry
    assert "token ids (L,), (1, L), (L, 1) or (1, L, 1) for a bundle with its own text encoder" in text_entry
    sentence = "good great"
    np.save(tmp_path / "ids.npy", np.array(Tokenizer.from_file(str(token_bundle / "tokenizer.json"))
                                           .encode(sentence).ids))
    scores = []
    for text in (sentence, str(tmp_path / "ids.npy")):
        assert main(["predict", str(token_bundle), "--text", text]) == 0
        scores.append(json.loads(capsys.readouterr().out)["score"])
    assert scores[0] == scores[1]
