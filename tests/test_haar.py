import pytest
import torch

from bdflow.haar import haar_forward, haar_inverse


@pytest.mark.parametrize("shape", [(1, 3, 8, 8), (2, 12, 16, 6), (1, 1, 2, 2)])
def test_exact_inverse_and_orthonormal(shape):
    x = torch.randn(shape, dtype=torch.float64)
    u = haar_forward(x)
    assert u.shape == (shape[0], 4 * shape[1], shape[2] // 2, shape[3] // 2)
    assert torch.allclose(haar_inverse(u), x, atol=1e-12)
    assert torch.allclose(u.pow(2).sum(), x.pow(2).sum())  # orthonormal: energy is preserved


def test_band_order_low_pass_first(face):
    u = haar_forward(face)
    low = u[:, :3] / 2  # the low-pass band is twice the 2x2 mean
    assert torch.allclose(low, torch.nn.functional.avg_pool2d(face, 2), atol=1e-6)
    flat = haar_forward(torch.full((1, 3, 4, 4), 0.5))
    assert torch.all(flat[:, 3:] == 0)  # a flat image has no detail


def test_odd_size_rejected():
    with pytest.raises(ValueError, match="even"):
        haar_forward(torch.zeros(1, 3, 5, 4))
    with pytest.raises(ValueError, match="multiple of 4"):
        haar_inverse(torch.zeros(1, 6, 2, 2))
