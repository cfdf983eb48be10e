"""``tools/results.py``: the results tables of README.md and docs/results.md are written from docs/results/, and a
table that disagrees with its data fails here."""

import json
import re
import shutil

import pytest

from tests.helpers import REPO, results_tool

results = results_tool()


def test_every_table_matches_its_data():
    assert results.main(["--check"]) == 0, "run: python tools/results.py"


def test_a_changed_number_is_caught(tmp_path):
    root = tmp_path / "results"
    shutil.copytree(REPO / "docs" / "results", root)
    text = (REPO / "README.md").read_text()
    assert results.render(text, results.BLOCKS["README.md"], root) == text
    summary = json.loads((root / "face-x64-test1024.json").read_text())
    summary["results"][-1]["psnr"] += 0.5  # BDFlow's row
    (root / "face-x64-test1024.json").write_text(json.dumps(summary))
    changed = results.render(text, results.BLOCKS["README.md"], root)
    assert changed != text and f"{summary['results'][-1]['psnr']:.2f}" in changed


def test_every_run_has_its_files_and_its_command():
    for run in results.RESULTS:
        summary = json.loads((REPO / "docs" / "results" / f"{run.name}.json").read_text())
        assert (REPO / "docs" / "results" / f"{run.name}.csv").is_file()
        bicubic = summary["results"][0]
        assert bicubic["method"] == "bicubic round trip"
        assert bicubic["images"] == (run.limit or {"val": 300, "test1024": 56}[run.split])
        args = summary["args"]
        assert args["data"].endswith(f"faces/{run.split}") and float(args["bits"]) == 1
        assert [float(t) for t in re.findall(r"[0-9.]+", args["tau"])] == sorted(run.taus)
        assert (args["twin"] != "None") == bool(run.twin)
        cmd = run.command()
        assert cmd[:3] == ["python", "-m", "bdflow.evaluate"] and f"docs/results/{run.name}.json" in cmd


def test_every_shipped_model_has_its_decoupling_measures():
    """docs/results/decoupling/NAME.json for each model of the decoupling table: its own checkpoint, 20 faces of its
    split, tau 0 and 0.5 decoded, the diversity map measured in and out of B's cells and on and off the edges."""
    for name, split in results.DECOUPLING.items():
        result = json.loads((REPO / "docs" / "results" / "decoupling" / f"{name}.json").read_text())
        assert result["checkpoint"] == name and result["images"] == 20
        assert set(result["taus"]) == {"0.0", "0.5"} and {"on_edges", "off_edges"} <= set(result["diversity"])
        assert results.decoupling_command(name)[-1] == f"docs/results/decoupling/{name}.json"
        assert f"faces/{split}" in " ".join(results.decoupling_command(name))


def test_missing_markers_are_an_error():
    with pytest.raises(ValueError, match="missing markers"):
        results.render("no table here", results.BLOCKS["README.md"])


def test_every_file_a_page_cites_exists():
    """Relative links of README.md and docs/, and every docs/results/ path they name (placeholders in capitals,
    like ARM, excepted), point at tracked files."""
    pages = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
    for page in pages:
        if "results" in page.relative_to(REPO).parts[1:2]:
            continue  # the benchmarks' own output pages
        text = page.read_text()
        for link in re.findall(r"\]\(([^)#\s]+)\)", text):
            if not re.match(r"[a-z]+:", link):
                assert (page.parent / link).exists(), (page.name, link)
        for cited in re.findall(r"docs/results/[\w./-]+\.(?:json|csv|md|png|txt)", text):
            if not re.search(r"/[A-Z]+[/.]", cited):
                assert (REPO / cited).is_file(), (page.name, cited)


def test_pair_gives_the_paired_difference_of_two_runs(capsys):
    """--pair (what the study pages quote): BDFlow - twin of one run equals the summary table's column, and
    several files on one side average per image (seeds)."""
    csv_path = str(REPO / "docs" / "results" / "face-x64-test1024.csv")
    assert results.main(["--pair", csv_path, csv_path + ":twin"]) == 0
    out = capsys.readouterr().out
    res = results.load(next(r for r in results.RESULTS if r.name == "face-x64-test1024"))
    assert f"{res['vs_twin']['mean']:+.4f} ± {res['vs_twin']['ci95']:.4f}" in out
    assert f"on {res['vs_twin']['ahead']} of 56" in out
    assert results.main(["--pair", f"{csv_path},{csv_path}", csv_path + ":twin"]) == 0
    assert capsys.readouterr().out == out  # the mean of a file with itself is the file
    with pytest.raises(ValueError, match="no tau-0 twin rows"):
        results.side(str(REPO / "docs" / "results" / "face-x8-val50.csv") + ":twin", "psnr")


def test_pair_at_a_tau_reads_that_taus_rows(capsys):
    """FILE@TAU: the rows decoded at TAU (what tau costs against tau 0 on the same images, the done-when of a
    decoder that samples); a tau the file does not hold is refused."""
    import csv

    path = REPO / "docs" / "results" / "face-x16-val50.csv"
    rows = list(csv.DictReader(path.open()))
    warm = {r["image"]: float(r["lpips"]) for r in rows if r["method"] == "twin face-x16-noB tau=0.5"}
    cold = {r["image"]: float(r["lpips"]) for r in rows if r["method"] == "twin face-x16-noB tau=0"}
    assert results.side(f"{path}:twin@0.5", "lpips") == warm and results.side(f"{path}:twin", "lpips") == cold
    assert results.main(["--pair", f"{path}:twin@0.5", f"{path}:twin", "--metric", "lpips"]) == 0
    mean = sum(warm[k] - cold[k] for k in warm) / len(warm)
    assert f"A - B {mean:+.4f}" in capsys.readouterr().out
    with pytest.raises(ValueError, match="no tau-0.8 bdflow rows"):
        results.side(f"{path}@0.8", "psnr")
