"""`bench --compare` of more than two reports: one host report against several boards, each later report against
the first, with each pair's settings and clock warnings; one report alone or the same report twice is refused."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import make_featureset
from edge_msa.benchmarks import run_bench
from edge_msa.cli import main
from edge_msa.data.base import DatasetSplits
from edge_msa.spec import FeatureSpec
from test_bench_clocks import JETSON, VM
from test_bench_sweep import FAST, _bundles, make_loader


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> dict[str, str]:
    """report.json paths: a baseline on a throttled Jetson (1 thread), a VM run with 2 threads, a second Jetson run
    like the baseline, and a VM run of other modalities than the baseline's."""
    spec = FeatureSpec(dims=(12, 5, 7), max_lens=(9, 3, 4))
    splits = DatasetSplits(spec, *(make_featureset(spec, n, seed) for n, seed in ((64, 0), (32, 1), (32, 2))))
    root, out = tmp_path_factory.mktemp("compare"), {}
    for name, sysfs, threads, modalities in (("base", JETSON, 1, "all"), ("vm", VM, 2, "all"),
                                             ("hot", JETSON, 1, "all"), ("text", VM, 1, "text")):
        (root / name).mkdir()
        out[name] = str(run_bench(_bundles(root / name, "student"), data=splits, out=root / name / "r",
                                  batches=(1, 2), modalities=(modalities,), meter="none", threads=threads,
                                  loader=make_loader(spec), sysfs_root=sysfs, **FAST) / "report.json")
    return out


def test_three_reports_compare_each_later_one_with_the_first(reports, tmp_path, capsys):
    """A host report against several boards took one --compare per board (nargs=2): now one run, a section per
    later report in compare.md and a list of the two-report comparisons in compare.json."""
    base, vm, hot = reports["base"], reports["vm"], reports["hot"]
    assert main(["bench", "--compare", base, vm, hot, "--out", str(tmp_path / "cmp")]) == 0
    printed = capsys.readouterr().out
    assert (tmp_path / "cmp" / "compare.md").read_text() == printed
    head, vm_part, hot_part = printed.split("\n## B = ")
    assert head.startswith(f"# edge-msa bench comparison: each of 2 reports B vs A = {base}\n")
    assert f"Clocks of A ({base}): 2 of 2 successful rows flagged throttled?" in head  # once, above the sections
    assert printed.count("Clocks of A") == 1
    assert vm_part.startswith(f"{vm}\n") and hot_part.startswith(f"{hot}\n")
    # each pair's own warnings: the VM ran 2 threads and is steady, the second Jetson ran as the baseline, throttled
    assert "Settings differ (the ratios include their effect): threads A 1, B 2." in vm_part
    assert "Clocks of B" not in vm_part and "Settings differ" not in hot_part
    assert f"Clocks of B ({hot}): 2 of 2 successful rows flagged throttled?" in hot_part
    assert all(part.count("| A bundle | B bundle |") == 1 for part in (vm_part, hot_part))
    written = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert list(written) == ["a", "comparisons", "unmatched"] and written["a"] == base and written["unmatched"] == []
    for entry, later in zip(written["comparisons"], (vm, hot), strict=True):  # each entry: that pair's compare.json
        assert main(["bench", "--compare", base, later, "--out", str(tmp_path / "pair")]) == 0
        assert entry == json.loads((tmp_path / "pair" / "compare.json").read_text())
    capsys.readouterr()
    assert [list(e["clock_warnings"]) for e in written["comparisons"]] == [["a"], ["a", "b"]]
    assert [e["settings_differ"] for e in written["comparisons"]] == [{"threads": {"a": 1, "b": 2}}, {}]


def test_two_reports_keep_the_one_comparison_layout(reports, tmp_path, capsys):
    """Scripts read compare.json's a / b / rows at the top: two reports write no "comparisons" list nor sections."""
    assert main(["bench", "--compare", reports["base"], reports["hot"], "--out", str(tmp_path / "cmp")]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"# edge-msa bench comparison: B = {reports['hot']} vs A = {reports['base']}\n")
    assert "## " not in printed and printed.count("Clocks of ") == 2
    written = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert list(written) == ["a", "b", "settings_differ", "clock_warnings", "rows"]


@pytest.mark.parametrize("which, message", [
    (["base"], "got 1 report to compare ({base}); expected two or more: the baseline A first, then the reports B "
               "to compare with it"),
    (["base", "vm", "./base"], "--compare got the same report twice ({base} and {same}); expected different reports"),
    (["base", "base"], "--compare got the same report twice ({base} and {base}); expected different reports"),
    (["base", "vm", "bundle/"], "--compare reads reports and times nothing; '{bundle}' is a bundle; expected "
                                "report.json files (bench the bundles first, then compare their reports)"),
    (["base", "folder/"], "--compare reads report files; '{folder}' is a report folder; expected '{vm}'"),
], ids=["one report", "same file spelled twice", "same path twice", "a bundle", "a report folder"])
def test_compare_refuses_in_one_line_and_writes_nothing(reports, tmp_path, capsys, which, message):
    """One report has nothing to divide by; a report against itself (two spellings of one path) gives ratios of 1
    that read as a measurement. A bundle or a report's folder given for a report said only "Is a directory"."""
    base = Path(reports["base"])
    (tmp_path / "bundle").mkdir()
    (tmp_path / "bundle" / "manifest.json").write_text("{}")
    paths = dict(reports, **{"./base": str(base.parent / ".." / base.parent.name / base.name),
                             "bundle/": f"{tmp_path / 'bundle'}/", "folder/": f"{Path(reports['vm']).parent}/"})
    assert main(["bench", "--compare", *(paths[w] for w in which), "--out", str(tmp_path / "cmp")]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and not (tmp_path / "cmp").exists()
    assert captured.err == "error: " + message.format(base=base, same=paths["./base"], text=reports["text"],
                                                      bundle=paths["bundle/"], folder=paths["folder/"],
                                                      vm=reports["vm"]) + "\n"


def test_each_later_report_matching_nothing_is_left_out_and_named(reports, tmp_path, capsys):
    """`--compare A B C` stopped at the first later report that matched no row of A (a board whose sweep failed, a
    run of other modalities) and compared none of the others. Each later report that matches is compared, each that
    does not is named on a line of its own (compare.md) and under "unmatched" (compare.json); only a run in which
    none matches is refused, as two reports that match nothing are."""
    base, vm, text = reports["base"], reports["vm"], reports["text"]
    rows = "have no successful rows with the same batch size, modalities and input (raw-text / precomputed-text)"
    assert main(["bench", "--compare", base, text, vm, "--out", str(tmp_path / "cmp")]) == 0
    printed = capsys.readouterr().out
    head, vm_part = printed.split("\n## B = ")
    assert head.startswith(f"# edge-msa bench comparison: each of 1 report B vs A = {base}\n")
    assert head.count("Left out: ") == 1 and f"\nLeft out: {text} and A {rows}.\n" in head
    assert vm_part.startswith(f"{vm}\n") and "Settings differ (the ratios include their effect): threads A 1, B 2" in (
        vm_part)
    written = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert written["unmatched"] == [text] and [pair["b"] for pair in written["comparisons"]] == [vm]
    other = shutil.copy(text, tmp_path / "other.json")  # a second report of other modalities: nothing matches
    assert main(["bench", "--compare", base, text, str(other), "--out", str(tmp_path / "none")]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and not (tmp_path / "none").exists()
    assert captured.err == f"error: the first report {base} and each later one ({text}, {other}) {rows}\n"
