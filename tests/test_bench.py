"""`vsgm bench` runs end to end on a tiny model, counts FLOPs consistently and never states a fraction above
the machine's limit (no timings asserted)."""

import json
import subprocess
import sys

import pytest

from vsgm.cli import main
from vsgm.peak import Limit, fraction, settle
from vsgm.precision import cpu_native_bf16

TINY = ["--model_channels", "16", "--channel_mult", "1", "2", "--attention_resolutions", "2",
        "--num_head_channels", "16", "--size", "8", "--batch_size", "8", "--micro_batch", "3", "--repeats", "1",
        "--sampler_batch", "2"]


def test_bench_writes_every_figure_and_counts_backward_as_twice_forward(tmp_path, capsys):
    out = tmp_path / "bench.json"
    main(["bench", *TINY, "--samplers", "em", "ode-rk4-logstd", "--out", str(out)])
    r = json.loads(out.read_text())
    assert "chunks of 3" in capsys.readouterr().out and r["train_micro_batch"] == 3
    # a training step is a forward and a backward (two products per layer), except the input gradient of
    # the first convolution, which nothing needs: just under three forwards
    assert 2.9 < r["train_flops_per_step"] / r["inference_flops_per_batch"] < 3.0
    fp32 = r["limits"]["fp32"]
    assert fp32["limit_flops"] == max(fp32["matmul_flops"], fp32["conv_flops"]) > 0
    for key in ("train_images_per_s", "inference_images_per_s", "score_loss_images_per_s",
                "score_msma_images_per_s", "score_msma_knn_images_per_s", "score_fisher_images_per_s",
                "score_bpd_images_per_s", "loader_images_per_s", "sampler_em_s_per_nfe",
                "sampler_ode-rk4-logstd_s_per_nfe"):
        assert r[key] > 0, key
    assert 0 < r["train_fraction_of_limit"] <= 1 and 0 < r["inference_fraction_of_limit"] <= 1


def test_bench_refuses_what_it_cannot_time(capsys):
    assert main(["bench", "--conditional", "--latent", "--device", "cpu"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["vsgm bench: error: vsgm bench times the unconditional pixel-space UNet; --conditional and "
                   "--latent cannot be timed"]


def test_no_fraction_above_the_limit():
    """A model cannot outrun the fastest kernel it is made of: a rate above the measured limit means the limit
    was under-measured. fraction() refuses it; settle() remeasures, and as a last resort takes the rate."""
    limit = Limit("float32", matmul=200e9, conv=500e9)
    assert limit.flops == 500e9 and limit.kernel == "3x3 conv"
    assert fraction(400e9, limit) == pytest.approx(0.8)
    with pytest.raises(ValueError, match="above the float32 limit of 500.0: the limit was under-measured"):
        fraction(600e9, limit)

    calls = []

    def remeasure_to(value):
        def remeasure():
            calls.append(value)
            limit.conv = max(limit.conv, value)
        return remeasure

    assert settle(limit, [450e9, 480e9], remeasure_to(900e9)) is False and calls == []  # below: nothing to do
    assert settle(limit, [600e9], remeasure_to(650e9)) is False and calls == [650e9]  # one remeasurement fixed it
    assert fraction(600e9, limit) <= 1
    # remeasured three times and still lower (a disturbed machine): the model's rate becomes the limit, said so
    assert settle(limit, [700e9, 800e9], remeasure_to(660e9)) is True and len(calls) == 4
    assert limit.flops == 800e9 and "model's own rate" in limit.kernel
    assert all(fraction(rate, limit) <= 1 for rate in (700e9, 800e9))


def test_bf16_bench_on_a_cpu_without_native_bf16_falls_back(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("VSGM_CPU_BF16", "0")
    out = tmp_path / "bench.json"
    with caplog.at_level("WARNING", logger="vsgm.precision"):
        main(["bench", *TINY, "--samplers", "em", "--autocast", "bf16", "--device", "cpu", "--out", str(out)])
    assert "--autocast bf16 needs native bf16" in caplog.text
    r = json.loads(out.read_text())
    assert r["autocast"] == "no" and list(r["limits"]) == ["fp32"]


@pytest.mark.skipif(not cpu_native_bf16(), reason="this CPU has no native bf16")
def test_bf16_bench_states_both_limits(tmp_path):
    # a process of its own: accelerate keeps one precision per process
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "vsgm.cli", "bench", *TINY, "--samplers", "em", "--autocast", "bf16",
                           "--device", "cpu", "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads(out.read_text())
    assert set(r["limits"]) == {"fp32", "bf16"} and r["autocast"] == "bf16"
    assert 0 < r["train_fraction_of_limit"] <= 1 and r["train_fraction_of_fp32_limit"] > 0
    assert "of the bf16 limit" in proc.stdout and "of fp32's" in proc.stdout
