"""The fused GroupNorm+SiLU CPU kernel against PyTorch's own ops, and the fallback when it cannot be built."""

import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from vsgm import fused
from vsgm.unet import UNetConfig, UNetModel

needs_kernel = pytest.mark.skipif(fused.native() is None, reason="the fused kernel could not be built here")


def reference(x, shift, weight, bias, groups, eps=1e-5):
    u = x if shift is None else x + shift.reshape(*shift.shape, 1, 1)
    return F.silu(F.group_norm(u, groups, weight, bias, eps))


def case(n, c, h, w, groups, with_shift, offset=0.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(n, c, h, w, generator=g) * 2 + offset).contiguous(memory_format=torch.channels_last)
    shift = torch.randn(n, c, generator=g) if with_shift else None
    weight, bias = torch.randn(c, generator=g), torch.randn(c, generator=g)
    return [x, shift, weight, bias, groups]


def value_and_grads(fn, x, shift, weight, bias, groups):
    leaves = [t.detach().clone().requires_grad_() if t is not None else None for t in (x, shift, weight, bias)]
    y = fn(*leaves, groups)
    dy = torch.randn(y.shape, generator=torch.Generator().manual_seed(1)).contiguous(
        memory_format=torch.channels_last)
    wanted = [t for t in leaves if t is not None]
    return [y.detach(), *torch.autograd.grad(y, wanted, dy)]


def fused_op(x, shift, weight, bias, groups):
    return fused.group_norm_silu(x, shift, weight, bias, groups, 1e-5)


@needs_kernel
@pytest.mark.parametrize("n,c,h,w,groups", [
    (4, 64, 8, 8, 32),    # two channels per group, as in the seed's UNet
    (3, 32, 7, 7, 32),    # one channel per group; 49 positions, not a multiple of the kernel's row block
    (2, 48, 10, 13, 4),   # twelve channels per group, 130 positions
    (1, 8, 1, 1, 2),      # one image, one position
])
@pytest.mark.parametrize("with_shift", [False, True])
def test_kernel_matches_pytorch_value_and_every_gradient(n, c, h, w, groups, with_shift):
    inputs = case(n, c, h, w, groups, with_shift)
    got = value_and_grads(fused_op, *inputs)
    want = value_and_grads(reference, *inputs)
    names = ["y", "dx", "dshift", "dweight", "dbias"] if with_shift else ["y", "dx", "dweight", "dbias"]
    assert got[0].is_contiguous(memory_format=torch.channels_last)
    for name, a, b in zip(names, got, want):
        assert a.shape == b.shape, name
        # dshift sums dx over the positions (exactly zero with one channel per group, up to rounding)
        scale = want[1].abs().sum((2, 3)).max() if name == "dshift" else b.abs().max()
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * scale.item(), msg=name)


@needs_kernel
@pytest.mark.parametrize("n,c,h,w,groups", [(4, 64, 8, 8, 32), (3, 32, 7, 7, 32), (2, 48, 10, 13, 4)])
def test_bf16_activations_match_float64_to_bf16_rounding(n, c, h, w, groups):
    """A bf16 autocast run hands the kernel bf16 activations: it reads and writes bf16 and computes in float.
    Against float64 on the same (bf16-valued) inputs, the value and dx are off by bf16's rounding of the
    result only (a relative 2^-8), and the float32 gradients of the weight, bias and shift by far less."""
    x, shift, weight, bias, groups = case(n, c, h, w, groups, True)
    x = x.bfloat16().contiguous(memory_format=torch.channels_last)
    got = value_and_grads(fused_op, x, shift, weight, bias, groups)
    assert got[0].dtype == got[1].dtype == torch.bfloat16 and got[0].is_contiguous(memory_format=torch.channels_last)
    assert all(g.dtype == torch.float32 for g in got[2:])
    exact_inputs = [x.double(), shift.double(), weight.double(), bias.double()]
    leaves = [t.detach().clone().requires_grad_() for t in exact_inputs]
    y = reference(*leaves, groups)
    dy = torch.randn(y.shape, generator=torch.Generator().manual_seed(1)).bfloat16()  # what the kernel got
    exact = [y.detach(), *torch.autograd.grad(y, leaves, dy.double())]
    for name, a, b, rtol in zip(["y", "dx", "dshift", "dweight", "dbias"], got, exact,
                                [2**-8, 2**-8, 1e-3, 1e-3, 1e-3]):
        scale = exact[1].abs().sum((2, 3)).max() if name == "dshift" else b.abs().max()
        torch.testing.assert_close(a.double(), b, rtol=rtol, atol=2**-8 * scale.item() * 1e-2, msg=name)


@needs_kernel
def test_bf16_path_is_the_float_path_rounded_as_torch_rounds():
    """On bf16 inputs the kernel computes exactly what its float32 path computes on the same values, then
    rounds to nearest even with its own vectorised conversion: bit for bit torch's rounding of that float32
    result, for the value and for dx (over 100,000 values of each)."""
    x, shift, weight, bias, groups = case(8, 64, 14, 14, 32, True)
    x = x.bfloat16().contiguous(memory_format=torch.channels_last)
    dy = torch.randn(x.shape, generator=torch.Generator().manual_seed(2)).bfloat16().contiguous(
        memory_format=torch.channels_last)
    out = {}
    for dtype in (torch.bfloat16, torch.float32):
        leaf = x.to(dtype).contiguous(memory_format=torch.channels_last).requires_grad_()
        y = fused_op(leaf, shift, weight, bias, groups)
        (dx,) = torch.autograd.grad(y, [leaf], dy.to(dtype).contiguous(memory_format=torch.channels_last))
        out[dtype] = (y.detach(), dx)
    for got, want in zip(out[torch.bfloat16], out[torch.float32]):
        assert torch.equal(got.view(torch.int16), want.bfloat16().view(torch.int16))


@needs_kernel
def test_kernel_keeps_the_variance_of_inputs_far_from_zero():
    """Statistics from sums of x and x^2 lose digits when the mean dwarfs the spread. At a mean 50 standard
    deviations from zero the kernel (double sums) stays within 5e-4 of float64, and no further from it
    than PyTorch's own float32 ops."""
    inputs = case(4, 64, 16, 16, 32, True, offset=100.0)
    exact = value_and_grads(reference, *[t.double() if isinstance(t, torch.Tensor) else t for t in inputs])
    got, pytorch = value_and_grads(fused_op, *inputs), value_and_grads(reference, *inputs)
    for a, b, e in zip(got, pytorch, exact):
        error = (a.double() - e).abs().max().item()
        assert error <= 5e-4 * e.abs().max().item()
        assert error <= (b.double() - e).abs().max().item()


@needs_kernel
def test_kernel_gives_the_same_bits_for_any_number_of_threads():
    inputs = case(8, 64, 8, 8, 32, True)
    threads = torch.get_num_threads()
    try:
        results = []
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            results.append(value_and_grads(fused_op, *inputs))
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        assert all(torch.equal(a, b) for a, b in zip(results[0], other))


@needs_kernel
def test_unet_with_the_kernel_matches_the_unet_with_pytorch_ops(monkeypatch):
    """The seed's UNet layout (two channels per group at the top level) on a small image: the output and
    every parameter's gradient agree with PyTorch's ops."""
    torch.manual_seed(0)
    model = UNetModel(UNetConfig(image_size=8, in_channels=1, model_channels=64, num_res_blocks=1,
                                 channel_mult=(1, 2), attention_resolutions=(2,), num_head_channels=32))
    for p in model.parameters():  # zero-initialised output convolutions would hide the inner layers
        p.data.add_(torch.randn_like(p) * 0.02)
    x, t = torch.randn(3, 1, 8, 8), torch.tensor([1.0, 300.0, 900.0])

    def run():
        model.zero_grad()
        out = model(x, t)
        out.pow(2).sum().backward()
        return [out.detach()] + [p.grad.clone() for p in model.parameters()]

    with_kernel = run()
    monkeypatch.setattr(fused, "applies", lambda x: False)
    with_pytorch = run()
    for a, b in zip(with_kernel, with_pytorch):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4 * b.abs().max().item() + 1e-7)


@pytest.mark.parametrize("why,env", [
    ("switched off", {fused.SWITCH: "0"}),
    ("no compiler", {"CXX": "/bin/false"}),
])
def test_unet_runs_on_pytorch_ops_without_the_kernel(tmp_path, why, env):
    """A machine with no working compiler (here: a compiler that always fails, in an empty build folder)
    warns once and trains on PyTorch's ops; the switch skips the attempt silently."""
    code = (
        "import warnings, torch\n"
        "from vsgm import fused\n"
        "from vsgm.unet import UNetConfig, UNetModel\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    net = UNetModel(UNetConfig(image_size=8, in_channels=1, model_channels=16, num_res_blocks=1,\n"
        "                               channel_mult=(1, 2), attention_resolutions=()))\n"
        "    net(torch.randn(2, 1, 8, 8), torch.ones(2)).sum().backward()\n"
        "print('native', fused.native() is not None)\n"
        "print('warnings', [str(w.message) for w in caught if 'fused' in str(w.message)])\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "TORCH_EXTENSIONS_DIR": str(tmp_path), **env})
    assert result.returncode == 0, result.stderr
    assert "native False" in result.stdout
    if why == "no compiler":
        assert "could not be built" in result.stdout
    else:
        assert "warnings []" in result.stdout
