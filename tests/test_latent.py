"""Latent mode with a tiny, randomly initialised AutoencoderKL saved to a temporary folder."""

import pytest
import torch

diffusers = pytest.importorskip("diffusers", reason="latent mode needs the optional diffusers extra")


@pytest.fixture(scope="module")
def tiny_vae(tmp_path_factory):
    torch.manual_seed(0)
    vae = diffusers.AutoencoderKL(in_channels=1, out_channels=1, latent_channels=2, block_out_channels=(8, 8),
                                  down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                                  layers_per_block=1, norm_num_groups=4, sample_size=8)
    path = tmp_path_factory.mktemp("vae")
    vae.save_pretrained(path)
    return path


def test_codec_shapes_and_round_trip_scale(tiny_vae):
    from vsgm.latent import LatentCodec

    codec = LatentCodec(tiny_vae)
    assert codec.latent_shape(1, 8) == (2, 4)
    x = torch.rand(3, 1, 8, 8) * 2 - 1
    z = codec.encode(x)
    assert z.shape == (3, 2, 4, 4)
    assert codec.decode(z).shape == x.shape
    with pytest.raises(ValueError, match="takes 1-channel images"):
        codec.latent_shape(3, 8)


def test_latent_training_sampling_and_scoring(tiny_options, digits_train, tiny_vae, tmp_path):
    from vsgm.data import load_prepared
    from vsgm.models import load_trained
    from vsgm.ood import FeatureConfig, outlier_features
    from vsgm.samplers import SamplerSettings, parse_sampler
    from vsgm.sample_batches import draw
    from vsgm.train import train

    tiny_options.update(latent=True, vae=str(tiny_vae), n_epochs=1, warmup=0, channel_mult=[1],
                        attention_resolutions=[1])
    meta = train(tiny_options, digits_train, tmp_path)
    assert (meta["latent_channels"], meta["latent_size"]) == (2, 4) and (meta["channels"], meta["size"]) == (1, 8)
    model = load_trained(tmp_path / "model.safetensors")
    assert model.net.config.in_channels == 2 and model.net.config.image_size == 4
    samples, cost = draw(model, parse_sampler("ode-euler"), 5, 5, SamplerSettings(num_steps=3, eps=1e-3))
    assert samples.shape == (5, 1, 8, 8) and samples.abs().max() <= 1 and cost["nfe"] == 3
    feats = outlier_features(model, load_prepared(digits_train).images[:10], FeatureConfig(), progress=False)
    assert len(feats) == 10 and feats.drop(columns="index").notna().all().all()


def test_missing_autoencoder_is_a_clear_error(tiny_options, digits_train, tmp_path):
    from vsgm.train import train

    tiny_options.update(latent=True, vae=str(tmp_path / "nowhere"))
    with pytest.raises(RuntimeError, match="cannot load the autoencoder"):
        train(tiny_options, digits_train, tmp_path / "out")
