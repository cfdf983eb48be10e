import pytest
import torch

from bdflow.quantize import b_to_codes, codes_to_b, quantize_b, quantize_y, y_to_uint8


def test_y_on_8bit_grid_with_straight_through_gradient():
    y = torch.tensor([-0.2, 0.0, 0.3, 0.50196, 1.4], requires_grad=True)
    q = quantize_y(y)
    assert torch.allclose(q * 255, torch.round(q * 255))
    assert q.min() >= 0 and q.max() <= 1
    q.sum().backward()
    assert torch.equal(y.grad, torch.ones_like(y))  # straight-through: identity gradient


@pytest.mark.parametrize("bits", [1, 2, 3, 4])
def test_b_on_kbit_grid_with_straight_through_gradient(bits):
    b = torch.rand(1000, requires_grad=True)
    q = quantize_b(b, bits)
    n = 2**bits - 1
    assert torch.allclose(q * n, torch.round(q * n))
    assert (q - b).abs().max() <= 0.5 / n + 1e-6  # nearest level
    q.sum().backward()
    assert torch.equal(b.grad, torch.ones_like(b))
    assert torch.equal(codes_to_b(b_to_codes(b.detach(), bits), bits), q.detach())


def test_ceil_keeps_every_positive_value():
    b = torch.tensor([0.0, 1e-4, 0.2, 0.9])
    assert torch.equal(quantize_b(b, 1, rounding="ceil"), torch.tensor([0.0, 1.0, 1.0, 1.0]))
    assert torch.equal(quantize_b(b, 1), torch.tensor([0.0, 0.0, 0.0, 1.0]))


@pytest.mark.parametrize("bits", [0, 5, 1.5, True, "2"])
def test_bits_out_of_range(bits):
    with pytest.raises(ValueError, match="bits must be an integer from 1 to 4"):
        quantize_b(torch.zeros(1), bits)


def test_codes_range_checked():
    with pytest.raises(ValueError, match="exceed"):
        codes_to_b(torch.tensor([4], dtype=torch.uint8), 2)
    assert y_to_uint8(torch.tensor([0.0, 0.5, 1.0])).tolist() == [0, 128, 255]
