"""`edge-msa` command line: each subcommand module parses its flags and makes one library call.

Heavy imports happen inside handlers so `edge-msa --help` is instant and works without torch.
Every EdgeMSAError becomes one line `error: ...` and exit code 2.
"""
from __future__ import annotations

import argparse
import contextlib
import difflib
import importlib
import json
import os
import re
import signal
import sys
import threading
import warnings
from typing import TYPE_CHECKING, Any, Iterable, Iterator, TextIO

from ..errors import TRAIN_FIX, EdgeMSAError, require_installed
from ..paths import MOSI_FILE, searched
from ..spec import suggest
from ..version import __version__

if TYPE_CHECKING:
    from ..runtime import Predictor

# One module per subcommand in edge_msa/cli/; each defines register(subparsers).
SUBCOMMANDS: tuple[str, ...] = ("pipeline", "train", "featurize", "bench", "compress", "export", "predict",
                                 "eval", "info", "serve", "feedback")
# The model-building subcommands and what they import beyond the device runtime (the [train] extra): checked
# before they start, so a runtime-only install answers in one line instead of an ImportError traceback.
NEEDS_TRAIN: dict[str, tuple[str, ...]] = {
    "train": ("torch", "safetensors"),
    "compress": ("torch", "torch_pruning", "onnx"),
    "export": ("torch", "onnx"),
    "pipeline": ("torch", "safetensors", "torch_pruning", "onnx"),
}

# Where a --data left out reads MOSI-U (paths.default_data_root), for the flags' help: it named ../shared/data only,
# so a user who had set $EDGE_MSA_DATA (as the README's set-up does) was told the default ignored it, and beside the
# checkout only, where the working directory is searched too (paths.searched, the one wording of that rule).
DEFAULT_DATA = searched(MOSI_FILE)
# The flag that passes a model option to train_teacher (train, pipeline), which messages name as `--model-param KEY=`
MODEL_PARAM_FLAG = "--model-param"


def add_threads_flag(parser: argparse.ArgumentParser) -> None:
    """--threads of the commands that run a bundle (predict, eval, bench), worded once; the rule it follows
    (0 = the library's default, as in serve and train) is errors.checked_threads, applied where the bundle opens."""
    parser.add_argument("--threads", type=int, default=None,
                        help="ONNX Runtime intra-op threads (left out or 0: ONNX Runtime's default)")


def add_model_param_flag(parser: argparse.ArgumentParser, names: str) -> None:
    """--model-param of the commands that train a teacher (train, pipeline), defined once; `names`: where its help
    says the model's option names are listed."""
    parser.add_argument(MODEL_PARAM_FLAG, dest="model_params", action=ModelParams, type=key_value, default={},
                        metavar="KEY=VALUE", help=f"an option of the teacher model, e.g. hidden=32 (repeatable; "
                        f"{names}; default: the model's own)")
    parser.set_defaults(model_param_texts={})  # each as typed, for model_param_flags (ModelParams)


def model_param_flags(args: argparse.Namespace) -> dict[str, str]:
    """named_as_flags's `spelled` for the options given with --model-param, each the flag as its user typed it: the
    line for `--model-param hidden=63.5` named the keyword the user never typed (`hidden = 63.5`), and the value as
    parsed read as another (`hidden="64"` as `hidden=64`, `hidden=1e2` as `hidden=100.0`). Only the keys given: an
    option a *_tiny factory merges in (or the model's own default) was not typed, and keeps its keyword."""
    return {key: f"{MODEL_PARAM_FLAG} {text}" for key, text in args.model_param_texts.items()}


def key_value(text: str) -> tuple[str, Any, str]:
    """One --model-param as (key, value, text as typed): VALUE read as a JSON scalar (a number, true / false, a quoted
    string), a bare word as that word, so a word needs no shell-proof quotes. A list, an object or null is no option
    value. The text is kept for messages (model_param_flags), as Typed keeps a float flag's."""
    key, equals, raw = text.partition("=")
    if not equals or not key.isidentifier() or not raw.strip():
        raise argparse.ArgumentTypeError(f"'{text}' is not KEY=VALUE; expected a model option and its value, such as "
                                         "hidden=32")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    if not isinstance(value, (int, float, str)):
        raise argparse.ArgumentTypeError(f"'{text}': {raw} is not a number, true / false or a word; expected a "
                                         "single value, such as hidden=32")
    return key, value, text


class ModelParams(argparse.Action):
    """Each --model-param into one dict (train_teacher's model_params, from train and pipeline). A key given twice is
    refused (the last one would win without a word), and so is a keyword of train_teacher itself: Python cannot pass
    it twice (a TypeError traceback); the line names the command's flag for it, where it has one."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        import inspect

        from ..teacher import train_teacher

        key, value, text = values
        params = getattr(namespace, self.dest)
        if key in params:
            raise argparse.ArgumentError(self, f"{key} given twice ({namespace.model_param_texts[key]} and {text}); "
                                               "expected each key once")
        if key in inspect.signature(train_teacher).parameters:
            flag = next((a.option_strings[0] for a in parser._actions if a.dest == key and a.option_strings), None)
            named = f" ({flag})" if flag else ""
            raise argparse.ArgumentError(self, f"{key} is a keyword of train_teacher itself{named}, not a model "
                                               "option it passes on; expected a model option")
        setattr(namespace, self.dest, {**params, key: value})
        namespace.model_param_texts = {**namespace.model_param_texts, key: text}


class Typed(float):
    """A float flag's value that prints as it was typed (the `type=` of such a flag): type=float made `--max-media-s
    0` 0.0, and messages name a setting as its user gave it (errors.given), so the user read `--max-media-s 0.0`. It
    computes as the float it is: arithmetic returns plain floats, and json writes float's own repr."""

    text: str

    def __new__(cls, text: str) -> "Typed":
        try:
            value = super().__new__(cls, text)
        except ValueError:  # argparse's own wording for type=float, which names the flag before it
            raise argparse.ArgumentTypeError(f"invalid float value: {text!r}") from None
        value.text = str(text)
        return value

    def __repr__(self) -> str:
        return self.text

    __str__ = __repr__


def add_media_limit_flag(parser: argparse.ArgumentParser, refused: str) -> None:
    """--max-media-s of predict, featurize and serve, defined once: its name (features.MEDIA_FLAG, which messages
    name it by), default (MAX_MEDIA_SECONDS, shared by the three) and help; each command had its own definition and
    wording. `refused`: what the command does with a longer file. The rule it follows is check_max_media_seconds."""
    from ..features import MAX_MEDIA_SECONDS, MEDIA_FLAG

    (knob, flag), = MEDIA_FLAG.items()
    parser.add_argument(flag, dest=knob, metavar=flag[2:].upper().replace("-", "_"), type=Typed,
                        default=MAX_MEDIA_SECONDS, help=f"longest audio / video file in seconds, {refused} (default "
                        f"{MAX_MEDIA_SECONDS:g}, shared by predict, featurize and serve; inf: no limit)")


def one_of(words: Iterable[str]) -> dict[str, Any]:
    """add_argument's keywords for a flag that takes one of `words` (each in lower case), read in any case: the one
    rule for the CLI's word choices (compress's word knobs follow options.KEYWORDS, in Python too). argparse's
    `choices` compared as typed, so `--split TEST` was refused while compress took `--share DEPTH`; they stay set so
    that --help lists the words. A word not listed is one line naming the flag (argparse adds it), the word as typed,
    the words expected and the closest of them."""
    words = tuple(words)

    def word(text: str) -> str:
        if text.lower() in words:
            return text.lower()
        raise argparse.ArgumentTypeError(f"invalid choice '{text}'{suggest(text.lower(), words)}")

    return {"type": word, "choices": words}


def add_backend_flag(parser: argparse.ArgumentParser) -> None:
    """--backend of the commands that run a bundle (predict, eval, bench), worded once: the backends a bundle is
    exported for (export's format table; the torch backend wraps a model in memory, never a bundle)."""
    from ..export.formats import FORMATS

    parser.add_argument("--backend", default=None, **one_of(dict.fromkeys(f.backend for f in FORMATS.values())),
                        help="runtime backend (default: the one the bundle was exported for)")


def load_bundle(bundle: str, **options: Any) -> Predictor:
    """`runtime.load(bundle, **options)` for the commands that run a bundle (predict, eval), whose messages name
    the options by the flags that set them: `--backend tensorrt` was told "use backend='onnxruntime'"."""
    from ..errors import named_as_flags
    from ..features import MEDIA_FLAG
    from ..runtime import load

    with named_as_flags(options, spelled=MEDIA_FLAG):
        return load(bundle, **options)


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors follow our one-line `error:` + exit 2 rule, and whose flags take any negative
    number float() reads."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # argparse reads a value that starts with '-' as a flag unless it looks like a negative number, and its test
        # knows only digits: `--max-media-s -inf` and `--lr -1e-3` were "expected one argument" (only the `=` form
        # reached the real check). No flag of ours looks like a number, so these are values
        self._negative_number_matcher = re.compile(r"^-(\d|\.\d|inf(inity)?$|nan$)", re.IGNORECASE)

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"error: {message}; see '{self.prog} --help'\n")
        raise SystemExit(2)

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        """A command not listed in the wording of every other word not listed (spec.suggest: the closest command,
        then the commands): argparse's own said `invalid choice: 'trian' (choose from 'pipeline', 'train', ...)`."""
        if isinstance(action, argparse._SubParsersAction) and value not in action.choices:
            raise argparse.ArgumentError(action, f"invalid choice '{value}'{suggest(value, tuple(action.choices))}")
        super()._check_value(action, value)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The `edge-msa` parser. `command`: register that subcommand alone where it is one (main passes the word its
    command line names): registering all eleven imported every command's modules (bench's meters, export's formats,
    serve's config), about 30 ms of each `edge-msa predict` on a device. Without one (`--help`, a mistyped command,
    None), all are registered, so the help lists them and a typo is told the closest."""
    parser = _Parser(prog="edge-msa", description="Compress multimodal sentiment models and run them on "
                     "small devices: train -> compress -> export -> predict / eval / bench.")
    parser.add_argument("--version", action="version", version=f"edge-msa {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in (command,) if command in SUBCOMMANDS else SUBCOMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def _command_word(argv: list[str]) -> str | None:
    """The subcommand a command line names: its first word, where that is one. Why not the first word that is no
    flag: a top-level flag before it is --help (argparse prints the top-level help before it reads the command, which
    listed that command alone: `edge-msa --help predict`), --version or one refused, and argparse reads `--` and a
    negative number as the command (`edge-msa -- predict` was told "expected one of predict")."""
    return argv[0] if argv and argv[0] in SUBCOMMANDS else None


def _parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """parse_args, except that a flag the subcommand lacks is reported by that subcommand (its --help, and the
    closest of its flags): from the top-level parser `export --int8` only pointed at `edge-msa --help`."""
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        sub = _subparsers(parser).choices.get(getattr(args, "command", None) or "", parser)
        flags = [f for action in sub._actions for f in action.option_strings]
        close = [m for u in unknown if u.startswith("-")
                 for m in difflib.get_close_matches(u.split("=")[0], flags, n=1, cutoff=0.7)]
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        sub.error(f"unrecognized arguments: {' '.join(unknown)}{hint}")
    return args


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(_command_word(argv))
    args = _parse(parser, argv)
    if not getattr(args, "handler", None):  # no command: it printed the help, exit 2, with no error line
        parser.print_usage(sys.stderr)
        parser.error(f"a command is required; expected one of {', '.join(SUBCOMMANDS)}")
    try:
        with warnings.catch_warnings(), _sigterm_as_interrupt():
            warnings.showwarning = _one_line_warning
            require_installed(NEEDS_TRAIN.get(args.command, ()), f"edge-msa {args.command}", TRAIN_FIX)
            code = int(args.handler(args) or 0)
            sys.stdout.flush()  # a reader that went away shows here, not in the interpreter's final flush
            return code
    except BrokenPipeError:
        return _stdout_closed()
    except EdgeMSAError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    except KeyboardInterrupt as exc:  # a note in it says what a command keeps on purpose (compress: finished stages)
        sys.stderr.write(f"error: interrupted; nothing half-written was kept{f' ({exc})' if str(exc) else ''}\n")
        return 143 if isinstance(exc, _Terminated) else 130


class _Terminated(KeyboardInterrupt):
    """SIGTERM (a timeout, `docker stop`, a CI cancel) as an interruption: the cleanup that runs on Ctrl-C (temp files,
    temp bundle folders) runs for it too, where the default action killed the process and left them on disk."""


def _terminate(signum: int, frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the cleanup short
    raise _Terminated()


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM handled like SIGINT while a command runs (a command may set its own: serve drains), then the previous
    handler back. Only the main thread may set handlers (main() called from another thread leaves them alone)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _stdout_closed() -> int:
    """The reader of our output went away (`edge-msa info B --json | head -1`): stop quietly, as Unix tools do.
    stdout is pointed at devnull so Python's flush at exit cannot raise again (the recipe in Python's signal docs)."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 141  # 128 + SIGPIPE (13): what a shell reports for `yes | head -1`


def _one_line_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                      file: TextIO | None = None, line: str | None = None) -> None:
    """A warning reaches a CLI user as one line `warning: ...` (e.g. a skipped media file, data that is not the
    model's), not Python's file:line header plus an echo of our source line."""
    sys.stderr.write(f"warning: {message}\n")
