"""Shared fixtures: a tiny model configuration and a prepared slice of real (embedded) data."""

import os

import pytest
import torch

from vsgm.options import defaults

torch.set_num_threads(min(2, os.cpu_count() or 1))

# Small enough to train in seconds on one CPU core, still the seed's UNet with attention.
TINY_MODEL = dict(model_channels=16, num_res_blocks=1, channel_mult=[1, 2], attention_resolutions=[2],
                  num_head_channels=16)


@pytest.fixture
def tiny_options():
    """Seed defaults with a tiny UNet and a short schedule."""
    opts = defaults()
    opts.update(TINY_MODEL, dataset="digits", n_epochs=2, warmup=1, batch_size=64, sample_and_save_freq=100,
                num_steps=10, num_samples=4, no_wandb=True, save_every=0, seed=0)
    return opts


@pytest.fixture(scope="session")
def digits_train(tmp_path_factory):
    """The embedded digits training split prepared at 8x8, one channel."""
    from vsgm.data import prepare

    out = tmp_path_factory.mktemp("prepared") / "digits" / "train.safetensors"
    prepare("digits", "train", tmp_path_factory.mktemp("data"), out, size=8, channels=1)
    return out


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, digits_train):
    """A tiny model trained for two epochs on digits (session-wide; treat as read-only)."""
    from vsgm.train import train

    opts = defaults()
    opts.update(TINY_MODEL, dataset="digits", n_epochs=2, warmup=1, batch_size=64, sample_and_save_freq=100,
                no_wandb=True)
    out = tmp_path_factory.mktemp("tiny_model")
    train(opts, digits_train, out)
    return out / "model.safetensors"
