"""A text with nothing to tokenize is refused in one wording, the runtime's, wherever it comes from; the REST service
and `predict --text` refuse it before any work and say where it was."""
import pytest

import edge_msa
from edge_msa.cli import main
from edge_msa.errors import InputError

from conftest import SERVE_SPEC

BLANKS = ("", "  ", "\n\t", "\u00a0\u3000")


def _runtime_refusal(bundle, text: str) -> str:
    with edge_msa.load(bundle) as predictor, pytest.raises(InputError) as info:
        predictor.predict(text=text)
    return str(info.value)


def test_rest_refuses_an_empty_text_in_the_runtimes_words(token_bundle, tmp_path):
    """REST said "text is empty; expected at least one word", the runtime "empty text; expected at least one word":
    two wordings of one rule, each with its own test for what blank is."""
    from edge_msa.serve.inputs import Limits, RequestError, parse_items

    for blank in BLANKS:
        words = _runtime_refusal(token_bundle, blank)
        with pytest.raises(RequestError) as one:
            parse_items([{"text": blank}], SERVE_SPEC, Limits(), lambda: tmp_path, many=False)
        with pytest.raises(RequestError) as batch:
            parse_items([{"text": "fine"}, {"text": blank}], SERVE_SPEC, Limits(), lambda: tmp_path, many=True)
        assert (one.value.status, one.value.message) == (400, words)
        assert batch.value.message == f"input #1: {words}"


def test_predict_refuses_an_empty_text_argument_in_the_runtimes_words(token_bundle, capsys):
    """`predict --text " "` said "empty --text; expected at least one word", the runtime "empty text; ..."."""
    for blank in BLANKS:
        assert main(["predict", str(token_bundle), "--text", blank]) == 2
        assert capsys.readouterr().err == f"error: --text: {_runtime_refusal(token_bundle, blank)}\n"
