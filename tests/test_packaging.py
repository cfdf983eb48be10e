"""pyproject.toml declares the library's dependencies as ranges with extras; requirements.txt is the exact pinned set
a Hugging Face Space installs, and it satisfies every range."""

import tomllib

from packaging.requirements import Requirement

from tests.helpers import REPO


def pins() -> dict[str, str]:
    lines = (REPO / "requirements.txt").read_text().splitlines()
    return {r.name.lower(): str(r.specifier)[2:] for r in map(Requirement, (l for l in lines if l and not l.startswith("#")))}


def test_requirements_are_exact_pins_with_torch_2_13():
    lines = [l for l in (REPO / "requirements.txt").read_text().splitlines() if l and not l.startswith("#")]
    assert all("==" in l for l in lines), lines
    assert pins()["torch"] == "2.13.0"


def test_pyproject_declares_ranges_and_extras_that_the_pins_satisfy():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert "dependencies" not in project.get("dynamic", [])
    extras = project["optional-dependencies"]
    assert {"app", "train"} <= set(extras)
    assert {"gradio", "gradio_client"} <= {Requirement(d).name for d in extras["app"]}
    assert "accelerate" in {Requirement(d).name for d in extras["train"]}
    pinned = pins()
    for dep in project["dependencies"] + [d for ds in extras.values() for d in ds]:
        req = Requirement(dep)
        assert "==" not in str(req.specifier), f"{dep}: a range, not a pin"
        assert req.name.lower() in pinned, f"{req.name} is not pinned in requirements.txt"
        assert req.specifier.contains(pinned[req.name.lower()]), (dep, pinned[req.name.lower()])
    core = {Requirement(d).name for d in project["dependencies"]}
    assert not core & {"gradio", "accelerate", "matplotlib"}, "the library alone does not need the app or training"
