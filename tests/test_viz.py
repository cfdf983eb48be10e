"""The app's panels as arrays (bdflow.viz): maps, the Z histogram, the no-B panel, frames, the level view, export."""

import numpy as np
import pytest
import torch
from PIL import Image

from bdflow import BDFlow, BDFlowConfig, levels, viz
from tests.helpers import perturb_


def test_viz_panels():
    y8 = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    big = viz.enlarge_nearest(y8, 4)
    assert big.shape == (8, 12, 3) and (big[:4, :4] == y8[0, 0]).all()
    codes = np.array([[0, 3], [1, 2]], np.uint8)
    img = viz.codes_image(codes, bits=2, factor=8, size=(12, 16))
    assert img.shape == (12, 16, 3) and img[0, 8, 0] == 255 and img[8, 0, 0] == 85
    edges = viz.edges_image(np.eye(4, dtype=bool))
    assert edges.dtype == np.uint8 and edges[0, 0, 0] == 255 and edges[0, 1, 0] == 0
    heat, vmax = viz.heat_image(np.array([[0.0, 1.0], [2.0, 4.0]]), vmax=2.0)
    assert heat.shape == (2, 2, 3) and vmax == 2.0 and (heat[1, 0] == heat[1, 1]).all()


def test_z_histogram_leaves_the_panel_label_room():
    """The app's panel label sits over the image's top-left corner; no plot title may be there."""
    rng = np.random.default_rng(0)
    hist = viz.z_histogram(rng.normal(0, 0.7, 5000), rng.laplace(0, 0.05, 5000), tau=0.8)
    assert hist.dtype == np.uint8 and hist.ndim == 3 and hist.shape[2] == 3 and hist.std() > 0
    assert (hist[: viz.LABEL_BAND] == 255).all()  # the band the label covers is empty
    assert (hist[viz.LABEL_BAND : viz.LABEL_BAND + 30] < 128).any()  # the titles follow right below it


def test_z_histogram_names_sigma_prints_the_distances_and_shows_every_value():
    """Fig. 2 tells the truth: sigma (not sigma^2) in the legend, excess kurtosis and TV in the title, and one
    x-range for the fit and the prior that holds every value (the tails are what is not Gaussian)."""
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(0, 1, 5000), [40.0, -25.0]])
    fig, ax = viz.plt.subplots()
    lo, hi = viz.hist_panel(ax, values, "forward Z", prior=True, tau=0.5)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("σ" in t for t in labels) and "prior N(0, 1): σ 1" in labels
    assert "excess kurtosis" in ax.get_title() and "TV to N(0, 1)" in ax.get_title()
    assert lo <= -25 and hi >= 40
    viz.plt.close(fig)


def test_no_b_panel_explains_itself():
    """A model without B gets a hatched panel with a sentence, not a flat grey square."""
    img = viz.codes_image(None, 1, size=(80, 96))
    assert img.dtype == np.uint8 and img.shape[1] >= 320
    assert img.shape[0] / img.shape[1] == pytest.approx(80 / 96, abs=0.01)  # the panel's shape is kept
    values = np.unique(img[..., 0])
    assert {150, 215} <= set(values.tolist())  # the hatching
    assert (img < 60).any()  # dark text on its white box
    assert viz.no_b_image((512, 512)).shape == (512, 512, 3)


def test_frame_keeps_white_cells_visible():
    """A white B cell at the image's edge is told apart from the white page by the frame."""
    white = viz.codes_image(np.ones((2, 2), np.uint8), bits=1, factor=8)
    out = viz.framed(white)
    assert out.shape == (20, 20, 3) and (out[2:-2, 2:-2] == 255).all()
    for edge in (out[:2], out[-2:], out[:, :2], out[:, -2:]):
        assert (edge == viz.FRAME_RGB).all()
    assert viz.FRAME_RGB[0] != viz.FRAME_RGB[1]  # a colour: never one of B's grey codes


@pytest.mark.parametrize("boundary", [True, False])
def test_levels_image(boundary):
    model = perturb_(BDFlow(BDFlowConfig(scale=4, hidden=8, boundary=boundary)), std=0.01).eval()
    with torch.no_grad(), levels.record(model, (32, 32)) as views:
        model(torch.rand(1, 3, 32, 32))
    img = viz.levels_image(views)
    assert img.dtype == np.uint8 and img.shape[0] > 2 * 150 and (img[: viz.LABEL_BAND] == 255).all()


def test_export_figure_png_and_pdf(tmp_path):
    rng = np.random.default_rng(0)
    panels = {f"p{i}": rng.integers(0, 255, (40, 50, 3), dtype=np.uint8) for i in range(4)}
    png, pdf = viz.export_figure(panels, "BDFlow ×8, τ = 0.80", tmp_path / "fig")
    assert png.name == "fig.png" and pdf.read_bytes()[:5] == b"%PDF-"
    assert Image.open(png).size[0] > 1000
    one_png, _ = viz.export_figure({"p0": panels["p0"]}, "one", tmp_path / "one")
    assert Image.open(one_png).size[0] < Image.open(png).size[0]
    with pytest.raises(ValueError, match="nothing to export"):
        viz.export_figure({}, "", tmp_path / "none")


def test_wide_panels_get_a_full_row_and_stay_readable(tmp_path):
    """The level view and the Z histograms are wide: each gets a row of its own at the figure's full width, so it
    is drawn at least at its own size (its small tiles and labels readable), not squeezed into a third."""
    rng = np.random.default_rng(0)
    panels = {f"p{i}": rng.integers(0, 255, (120, 120, 3), dtype=np.uint8) for i in range(4)}
    panels["level by level"] = np.zeros((300, 940, 3), np.uint8)
    panels["level by level"][..., 0] = 255  # pure red, to find it in the PNG
    assert viz.figure_rows(panels) == [["p0", "p1", "p2"], ["p3"], ["level by level"]]
    png, _ = viz.export_figure(panels, "caption", tmp_path / "fig")
    rgb = np.asarray(Image.open(png).convert("RGB")).astype(int)
    red = (rgb[..., 0] > 200) & (rgb[..., 1] < 60) & (rgb[..., 2] < 60)
    assert red.sum(axis=1).max() >= 940 and red.sum(axis=0).max() >= 300
