import pytest
import torch

from bdflow.wavelets import dwt2, haar_forward, haar_inverse, idwt2


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


WAVELETS = ["haar", "cdf53", "cdf97"]


@pytest.mark.parametrize("wavelet", WAVELETS)
def test_odd_size_and_unknown_wavelet_rejected(wavelet):
    with pytest.raises(ValueError, match="even"):
        dwt2(torch.zeros(1, 3, 5, 4), wavelet)
    with pytest.raises(ValueError, match="4C"):
        idwt2(torch.zeros(1, 6, 2, 2), wavelet)
    with pytest.raises(ValueError, match="wavelet must be one of"):
        dwt2(torch.zeros(1, 3, 4, 4), "db4")


@pytest.mark.parametrize("wavelet", WAVELETS)
@pytest.mark.parametrize("shape", [(1, 3, 8, 8), (2, 12, 16, 6), (1, 1, 2, 2), (1, 3, 2, 64)])
def test_lifting_exact_inverse(wavelet, shape):
    x = torch.randn(shape, dtype=torch.float64)
    u = dwt2(x, wavelet)
    assert u.shape == (shape[0], 4 * shape[1], shape[2] // 2, shape[3] // 2)
    assert (idwt2(u, wavelet) - x).abs().max() < 1e-12


@pytest.mark.parametrize("wavelet, moments", [("cdf53", 2), ("cdf97", 4)])
def test_vanishing_moments(wavelet, moments):
    """Polynomials of degree below the number of vanishing moments give zero details away from the borders, and a
    constant gives zero details everywhere with A = 2c (the flow's scaling)."""
    t = torch.arange(32, dtype=torch.float64)
    for degree in range(moments):
        x = ((t / 32) ** degree).view(1, 1, 1, 32).expand(1, 1, 2, 32).contiguous()
        details = dwt2(x, wavelet)[:, 1]  # H: the details across columns
        assert details[..., 3:-3].abs().max() < 1e-9, degree
    flat = dwt2(torch.full((1, 1, 6, 6), 0.7, dtype=torch.float64), wavelet)
    assert flat[:, 1:].abs().max() < 1e-12 and torch.allclose(flat[:, 0], torch.full_like(flat[:, 0], 1.4))


@pytest.mark.parametrize("wavelet", ["cdf53", "cdf97"])
def test_symmetric_extension_has_no_wrap_around(wavelet):
    """Changing the left half of a signal leaves the right-most coefficients unchanged (a periodic extension would
    mix the two ends)."""
    x = torch.rand(1, 1, 2, 32, dtype=torch.float64)
    other = x.clone()
    other[..., :16] = torch.rand(1, 1, 2, 16, dtype=torch.float64)
    assert torch.equal(dwt2(x, wavelet)[..., -3:], dwt2(other, wavelet)[..., -3:])
    assert not torch.equal(dwt2(x, wavelet)[..., :3], dwt2(other, wavelet)[..., :3])


@pytest.mark.parametrize("wavelet", ["cdf53", "cdf97"])
@pytest.mark.parametrize("shape", [(1, 3, 2, 2), (2, 12, 16, 6), (1, 48, 6, 10)])
def test_lifting_without_autograd_is_bit_identical_to_training(wavelet, shape):
    """The inference path writes the neighbour sums in place (no autograd); training concatenates them."""
    x = torch.randn(shape, requires_grad=True)
    u_train = dwt2(x, wavelet)
    x_train = idwt2(u_train, wavelet)
    with torch.inference_mode():
        u_fast = dwt2(x.detach(), wavelet)
        x_fast = idwt2(u_fast, wavelet)
    assert torch.equal(u_fast, u_train.detach()) and torch.equal(x_fast, x_train.detach())


@pytest.mark.parametrize("wavelet", ["haar", "cdf53", "cdf97"])
def test_phase_sets_where_the_low_pass_sits(wavelet):
    """On a ramp x[., w] = w the low-pass (A / 2) reads the position it sits on: the pair's centre 2i + 1/2 for Haar
    (either phase), the even sample 2i or the odd one 2i + 1 for the lifting wavelets (away from the borders).
    Both phases are exact."""
    x = torch.arange(32, dtype=torch.float64).expand(1, 1, 8, 32).contiguous()
    centre = 2 * torch.arange(16, dtype=torch.float64)
    for phase, offset in (("even", 0.0), ("odd", 1.0)):
        u = dwt2(x, wavelet, phase)
        expected = centre + (0.5 if wavelet == "haar" else offset)
        assert torch.allclose(u[0, 0, 2, 3:-3] / 2, expected[3:-3], atol=1e-9)
        assert (idwt2(u, wavelet, phase) - x).abs().max() < 1e-12
    with pytest.raises(ValueError, match="phase"):
        dwt2(x, "cdf97", "middle")
