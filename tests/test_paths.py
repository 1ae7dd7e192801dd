"""Where a --data left out reads the data (paths.default_data_root), and that the --data help says so."""
from __future__ import annotations

import pytest

import edge_msa.paths as paths
from edge_msa.paths import DATA_ENV, MOSI_FILE

SHARED_DATA = "../shared/data"  # as the help and the error name it, from the checkout or the working directory


def _data_flag_helps() -> dict[str, str]:
    from edge_msa.cli import build_parser

    parser = build_parser()
    subs = next(a for a in parser._actions if a.choices and not a.option_strings).choices
    return {name: a.help for name, sub in subs.items() for a in sub._actions
            if "--data" in a.option_strings and "shared/data" in a.help}  # those that default to MOSI-U


@pytest.mark.parametrize("place", ["the checkout", "the working directory"])
def test_the_data_help_names_each_place_default_data_root_searches(place, tmp_path, monkeypatch):
    """The --data help said `../shared/data/...` (beside the checkout, as it read), while default_data_root also
    looks beside the working directory: each place it searches is one the help names, with the same folder."""
    monkeypatch.delenv(DATA_ENV, raising=False)
    checkout, cwd = tmp_path / "checkout", tmp_path / "elsewhere" / "cwd"
    (checkout / "edge_msa").mkdir(parents=True)
    cwd.mkdir(parents=True)
    monkeypatch.setattr(paths, "__file__", str(checkout / "edge_msa" / "paths.py"))
    monkeypatch.chdir(cwd)
    base = {"the checkout": checkout, "the working directory": cwd}[place]
    assert paths.default_data_root() is None  # neither has a data folder beside it yet
    (base.parent / "shared" / "data").mkdir(parents=True)
    assert paths.default_data_root() == (base / SHARED_DATA).resolve()
    helps = _data_flag_helps()
    assert len(helps) == 5  # train, pipeline, eval, bench, compress
    default = f"${DATA_ENV}/{MOSI_FILE}, else {SHARED_DATA}/{MOSI_FILE} beside the checkout or the working directory"
    assert [name for name, text in helps.items() if default not in text] == [] and place in default


def test_no_data_found_names_the_places_searched(tmp_path, monkeypatch):
    """default_mosi_path's error names the same places (it said beside the checkout only)."""
    from conftest import one_line_error

    monkeypatch.delenv(DATA_ENV, raising=False)
    monkeypatch.setattr(paths, "__file__", str(tmp_path / "checkout" / "edge_msa" / "paths.py"))
    monkeypatch.chdir(tmp_path)
    assert one_line_error(paths.default_mosi_path) == (
        f"no --data given and no {SHARED_DATA}/{MOSI_FILE} beside the checkout or the working directory; pass "
        f"--data PATH (or set {DATA_ENV})")
