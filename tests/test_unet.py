import itertools
import math
import subprocess
import sys

import pytest
import torch

from vsgm.unet import AttentionBlock, UNetConfig, UNetModel

TINY = dict(model_channels=16, num_res_blocks=1, num_head_channels=8, channel_mult=(1, 2), attention_resolutions=(2,))


def make(**kw):
    cfg = UNetConfig(**{**TINY, "image_size": 8, **kw})
    return UNetModel(cfg)


@pytest.mark.parametrize("dims,shape", [(1, (2, 3, 16)), (2, (2, 3, 8, 8)), (3, (2, 2, 4, 8, 8))])
def test_forward_shape_for_every_dims(dims, shape):
    model = make(dims=dims, in_channels=shape[1])
    out = model(torch.randn(shape), torch.rand(shape[0]) * 1000)
    assert out.shape == shape


@pytest.mark.parametrize("scale_shift,updown,new_order,conv_resample",
                         list(itertools.product([False, True], repeat=4)))
def test_every_option_combination_runs_and_backprops(scale_shift, updown, new_order, conv_resample):
    model = make(use_scale_shift_norm=scale_shift, resblock_updown=updown, use_new_attention_order=new_order,
                 conv_resample=conv_resample, dropout=0.1, in_channels=3)
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    out = model(x, torch.tensor([1.0, 500.0]))
    assert out.shape == x.shape
    out.pow(2).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_seed_default_model_has_the_documented_size():
    model = UNetModel(UNetConfig(image_size=32, in_channels=1))
    n = sum(p.numel() for p in model.parameters())
    assert 6.0e6 < n < 7.0e6  # the seed's default UNet has about 6.5 M parameters


def randomize(model):
    """Zero-initialised output layers hide conditioning at init: give every weight a random value."""
    torch.manual_seed(0)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.2)
    return model


@pytest.mark.parametrize("channels,scale_shift,blind", [(16, False, [16, 32]), (16, True, []), (32, False, [32]),
                                                       (64, False, [])])
def test_widths_without_time_are_the_ones_that_ignore_it(channels, scale_shift, blind):
    """GroupNorm with one channel per group erases an added per-channel constant: at those widths the time
    embedding has no effect, and where every width is like that the whole network ignores t."""
    from vsgm.unet import widths_without_time

    model = randomize(make(model_channels=channels, channel_mult=(1, 2), num_head_channels=16,
                           use_scale_shift_norm=scale_shift)).eval()
    assert widths_without_time(model) == blind
    # the workflow's torch-free check reads the same widths off the options
    assert UNetConfig(model_channels=channels, channel_mult=(1, 2), use_scale_shift_norm=scale_shift
                      ).widths_without_time() == blind
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        early, late = model(x, torch.full((2,), 1.0)), model(x, torch.full((2,), 900.0))
    change = (early - late).abs().max().item()  # rounding only (~1e-6) where the network is blind to t
    assert (change < 1e-4) == (blind == [channels, 2 * channels]), change


def test_class_conditioning_changes_output_and_requires_labels():
    # 64 channels: groups of two, which keep the embedding (the tiny model's groups of one normalise it away)
    model = randomize(make(num_classes=11, model_channels=64))
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([3.0, 3.0])
    a = model(x, t, torch.tensor([0, 0]))
    b = model(x, t, torch.tensor([10, 10]))  # label 10 = "no label"
    assert (a - b).abs().max() > 1e-3 * a.abs().max()
    with pytest.raises(ValueError, match="labels"):
        model(x, t)


def test_attention_orders_are_the_same_function_up_to_weight_layout():
    torch.manual_seed(0)
    legacy = make(use_new_attention_order=False, num_head_channels=-1, num_heads=2)
    new = make(use_new_attention_order=True, num_head_channels=-1, num_heads=2)
    randomize(legacy)
    new.load_state_dict(legacy.state_dict())
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([5.0, 9.0])
    # same weights, different head split: outputs differ, both finite
    assert torch.isfinite(legacy(x, t)).all() and torch.isfinite(new(x, t)).all()
    assert not torch.allclose(legacy(x, t), new(x, t))


def test_no_recomputation_unless_asked():
    from torch.utils import checkpoint as ckpt
    calls = []
    orig = ckpt.checkpoint
    try:
        ckpt.checkpoint = lambda *a, **k: calls.append(1) or orig(*a, **k)
        import vsgm.unet as unet
        unet.checkpoint = ckpt.checkpoint
        model = make()
        model(torch.randn(1, 1, 8, 8), torch.tensor([1.0])).sum().backward()
        assert calls == []
        model = make(use_checkpoint=True)
        model(torch.randn(1, 1, 8, 8), torch.tensor([1.0])).sum().backward()
        assert calls
    finally:
        ckpt.checkpoint = orig
        unet.checkpoint = orig


@pytest.mark.parametrize("kw,message", [
    (dict(attention_resolutions=(8,)), "not downsample rates"),
    (dict(num_head_channels=12), "does not divide"),
    (dict(channel_mult=()), "must not be empty"),
    (dict(image_size=7), "not divisible"),
    (dict(dims=4), "dims"),
])
def test_impossible_configs_are_refused(kw, message):
    with pytest.raises(ValueError, match=message):
        make(**kw)


def test_the_checks_import_no_torch():
    """The workflow runs UNetConfig.validate on a config before any job (and in every cluster job)."""
    code = ("import sys; from vsgm.unet_config import UNetConfig; UNetConfig().validate(); "
            "assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_head_sizes_are_checked_only_where_attention_is():
    """Widths without attention need not split into heads; the middle block always has attention."""
    model = make(model_channels=16, channel_mult=(1, 2), attention_resolutions=(2,), num_head_channels=32)
    assert {b.qkv.in_channels for b in model.modules() if isinstance(b, AttentionBlock)} == {32}
    assert model(torch.randn(1, 1, 8, 8), torch.tensor([1.0])).shape == (1, 1, 8, 8)
    with pytest.raises(ValueError, match=r"does not divide the attention width\(s\) \[16\]"):
        make(model_channels=16, channel_mult=(1, 2), attention_resolutions=(1,), num_head_channels=32)
    with pytest.raises(ValueError, match=r"num_heads 3 does not divide the attention width\(s\) \[32\]"):
        make(model_channels=16, channel_mult=(1, 2), attention_resolutions=(), num_head_channels=-1, num_heads=3)


def _adm_attention(block, x, new_order):
    """The reference ADM AttentionBlock (QKVAttention / QKVAttentionLegacy), written out with einsum."""
    b, c, *spatial = x.shape
    flat = x.reshape(b, c, -1)
    qkv = block.qkv(block.norm(flat))
    heads, length = block.num_heads, flat.shape[-1]
    ch = c // heads
    scale = 1 / math.sqrt(math.sqrt(ch))
    if new_order:
        q, k, v = (z.reshape(b * heads, ch, length) for z in qkv.chunk(3, dim=1))
    else:
        q, k, v = qkv.reshape(b * heads, 3 * ch, length).split(ch, dim=1)
    weight = torch.softmax(torch.einsum("bct,bcs->bts", q * scale, k * scale), dim=-1)
    out = torch.einsum("bts,bcs->bct", weight, v).reshape(b, c, length)
    return (flat + block.proj_out(out)).reshape(b, c, *spatial)


@pytest.mark.parametrize("new_order", [False, True])
@pytest.mark.parametrize("spatial", [(12,), (4, 6), (2, 3, 4)])
def test_attention_block_matches_the_reference(new_order, spatial):
    from vsgm.unet import AttentionBlock
    torch.manual_seed(0)
    block = AttentionBlock(32, num_heads=4, use_new_attention_order=new_order)
    randomize(block)
    x = torch.randn(3, 32, *spatial)
    if len(spatial) == 2:
        x = x.contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(block(x), _adm_attention(block, x, new_order), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("scale_shift,updown", [(False, False), (True, True)])
def test_inference_path_computes_the_same_function(scale_shift, updown):
    """Without autograd some SiLUs and adds run in place: the output must not change."""
    model = randomize(make(use_scale_shift_norm=scale_shift, resblock_updown=updown)).eval()
    x, t = torch.randn(3, 1, 8, 8), torch.tensor([5.0, 50.0, 500.0])
    with torch.no_grad():
        fast = model(x, t)
    torch.testing.assert_close(fast, model(x, t).detach(), rtol=0, atol=0)


def test_cpu_inference_in_chunks_computes_the_same_function(monkeypatch):
    import vsgm.unet

    # conditional, time embedding after the norm: labels and times must stay with their images
    model = randomize(make(use_scale_shift_norm=True, num_classes=3)).eval()
    x, t, y = torch.randn(5, 1, 8, 8), torch.tensor([1.0, 5.0, 50.0, 500.0, 900.0]), torch.tensor([2, 0, 1, 1, 0])
    with torch.no_grad():
        whole = model(x, t, y)
        monkeypatch.setattr(vsgm.unet, "CPU_CHUNK_BYTES", 2 * 4 * 16 * 64)  # two images per pass
        assert model.inference_chunk(x) == 2
        chunked = model(x, t, y)
    torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-6)
    assert model.inference_chunk(x) == 5  # with autograd: one pass (training chunks its own batches)


def test_bf16_cpu_training_attention_runs_the_math_kernel_and_agrees_with_fp32():
    """Under CPU bf16 autocast with autograd, attention takes PyTorch's math kernel (its backward is matrix
    products; the CPU flash kernel's backward was 8x its forward); values and gradients agree with fp32
    within bf16 rounding, and fp32 keeps the default kernel."""
    from torch.profiler import profile

    from vsgm.unet import _attention

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(4, 2, 64, 32, generator=g, requires_grad=True) for _ in range(3))
    ref = _attention(q, k, v)
    ref_grads = torch.autograd.grad(ref.square().sum(), (q, k, v))

    def ops(fn):
        with profile() as prof:
            fn()
        return {e.key for e in prof.key_averages()}

    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not any("flash" in op for op in ops(lambda: _attention(q, k, v)))
        out = _attention(q, k, v)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref, atol=0.03, rtol=0.02)
    for got, want in zip(torch.autograd.grad(out.float().square().sum(), (q, k, v)), ref_grads):
        assert torch.linalg.vector_norm(got.float() - want) / torch.linalg.vector_norm(want) < 0.02
    assert any("flash" in op for op in ops(lambda: _attention(q, k, v)))  # fp32: PyTorch's own choice
