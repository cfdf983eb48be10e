"""The level view (bdflow.levels): hooks on the InvBlocks record what each level's wavelet and blocks give."""

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from bdflow import BDFlow, BDFlowConfig, levels
from bdflow.flow import LEVEL_GAIN
from bdflow.wavelets import dwt2
from tests.helpers import perturb_


@pytest.mark.parametrize("boundary, wavelet, b_mode", [(True, "haar", "channel"), (False, "haar", "channel"), (True, "cdf97", "condition")])
def test_records_the_wavelet_and_the_blocks(boundary, wavelet, b_mode, face):
    config = BDFlowConfig(scale=8, hidden=8, boundary=boundary, wavelet=wavelet, b_mode=b_mode)
    model = perturb_(BDFlow(config), std=0.01).eval()
    x = F.interpolate(face, size=(64, 72), mode="area")
    with torch.no_grad(), levels.record(model, (60, 70)) as views:
        y, b, z = model(x)
    assert [v.index for v in views] == [1, 2, 3] and [v.channels for v in views] == [12, 48, 192]
    assert [v.last for v in views] == [False, False, True]
    # level 1's low-pass is the wavelet's (times the flow's gain; Haar: the 2x2 mean), cropped to the unpadded size
    low = (dwt2(x, wavelet)[:, :3] * LEVEL_GAIN)[0, :, :30, :35].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(views[0].before_low, low, atol=1e-6)
    if wavelet == "haar":
        np.testing.assert_allclose(low, F.avg_pool2d(x, 2)[0, :, :30, :35].permute(1, 2, 0).numpy(), atol=1e-6)
    assert views[0].before_low.shape == (30, 35, 3) and views[2].after_low.shape == (8, 9, 3)
    # the last level's output is what the flow splits into Y, B and Z (Z before its scale exp(a))
    last = views[-1]
    np.testing.assert_allclose(last.after_low, y[0, :, :8, :9].permute(1, 2, 0).numpy(), atol=1e-6)
    z_flow = z * torch.exp(-model.z_log_scale.detach())
    z_rms = z_flow[0, :, :8, :9].pow(2).mean(0).sqrt().numpy()
    np.testing.assert_allclose(last.after_detail, z_rms, rtol=1e-4, atol=1e-6)
    if config.b_channel:
        np.testing.assert_allclose(last.after_b, b[0, 0, :8, :9].numpy(), atol=1e-6)
    else:  # the twin has no B; a condition B is not one of the flow's channels
        assert last.after_b is None and (b is None) == (not boundary)
    # with B as a condition, every level records the B its couplings read; the last level's is B itself
    assert all((v.condition is not None) == config.conditioned for v in views)
    if config.conditioned:
        np.testing.assert_allclose(last.condition, b[0, 0, :8, :9].numpy(), atol=1e-6)
        assert views[0].condition.shape == (30, 35)
    assert all(v.stats["detail_rms_before"] > 0 and v.stats["low_change"] >= 0 for v in views)
    # the hooks are gone afterwards
    assert not any(blk._forward_hooks or blk._forward_pre_hooks for lvl in model.levels for blk in lvl)


def test_large_maps_are_downscaled(face):
    model = BDFlow(BDFlowConfig(scale=2, hidden=8)).eval()
    with torch.no_grad(), levels.record(model, (512, 512)) as views:
        model(face)
    assert views[0].before_low.shape == (levels.MAX_SIDE, levels.MAX_SIDE, 3)
