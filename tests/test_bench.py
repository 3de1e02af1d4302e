"""`vsgm bench` runs end to end on a tiny model and counts FLOPs consistently (no timings asserted)."""

import json

from vsgm.cli import main


def test_bench_writes_every_figure_and_counts_backward_as_twice_forward(tmp_path, capsys):
    out = tmp_path / "bench.json"
    main(["bench", "--model_channels", "16", "--channel_mult", "1", "2", "--attention_resolutions", "2",
          "--num_head_channels", "16", "--size", "8", "--batch_size", "8", "--micro_batch", "3", "--repeats", "1",
          "--samplers", "em", "ode-rk4-logstd", "--sampler_batch", "2", "--out", str(out)])
    r = json.loads(out.read_text())
    assert "chunks of 3" in capsys.readouterr().out and r["train_micro_batch"] == 3
    # a training step is a forward and a backward (two products per layer), except the input gradient of
    # the first convolution, which nothing needs: just under three forwards
    assert 2.9 < r["train_flops_per_step"] / r["inference_flops_per_batch"] < 3.0
    for key in ("matmul_peak_flops", "train_images_per_s", "inference_images_per_s", "score_loss_images_per_s",
                "score_msma_images_per_s", "score_msma_knn_images_per_s", "score_fisher_images_per_s",
                "score_bpd_images_per_s", "loader_images_per_s", "sampler_em_s_per_nfe",
                "sampler_ode-rk4-logstd_s_per_nfe"):
        assert r[key] > 0, key
    assert 0 < r["train_fraction_of_peak"] < 2 and 0 < r["inference_fraction_of_peak"] < 2


def test_bench_refuses_what_it_cannot_time(capsys):
    assert main(["bench", "--conditional", "--latent", "--device", "cpu"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["vsgm bench: error: vsgm bench times the unconditional pixel-space UNet; --conditional and "
                   "--latent cannot be timed"]
