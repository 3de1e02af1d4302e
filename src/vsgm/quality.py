"""Sample-quality numbers. Offline: the Frechet distance in the feature space of a small classifier
trained on the in-distribution training set (the idea of FID without Inception weights or a network).
With Inception-v3 weights on disk: FID in Inception's 2048-d pool features, skipped with a note when
there are none (nothing is downloaded)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import load_state_strict, load_tensors, save_tensors
from .guards import check_fields
from .inputs import check_same_space, classifier_space, prepared_space, read_samples
from .data.loader import normalise
from .metrics import frechet_distance
from .progress import progress
from .quality_metrics import N_BOOT, quality_metrics


class SmallClassifier(nn.Module):
    """Three conv blocks and a linear head; ``features`` is the 64-d penultimate activation."""

    def __init__(self, channels: int, n_classes: int, width: int = 32):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), nn.GroupNorm(8, width), nn.SiLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.GroupNorm(8, 2 * width), nn.SiLU(),
            nn.Conv2d(2 * width, 2 * width, 3, stride=2, padding=1), nn.GroupNorm(8, 2 * width), nn.SiLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(2 * width, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


# images the feature classifier trains on at most (a seeded subset of bigger splits): its training costs
# about 48 MFLOP per 32x32 RGB image and epoch, so 5 epochs over 50,000 images are 12 TFLOP (minutes on
# one CPU thread) where places365's 1.8 M images would be 0.43 PFLOP (hours)
CLASSIFIER_MAX_IMAGES = 50_000


def classifier_subset(n: int, max_images: int, seed: int) -> torch.Tensor:
    """Indices of the images the classifier trains on: all of them, or a seeded subset of ``max_images``
    (0: no cap), in their stored order."""
    if not max_images or n <= max_images:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:max_images].sort().values


def train_classifier(images: torch.Tensor, labels: torch.Tensor, epochs: int = 5, batch_size: int = 128,
                     seed: int = 0, device: str | torch.device = "cpu") -> tuple[SmallClassifier, float]:
    """Train the feature network on uint8 images with their labels.

    Args:
        images, labels: the training set (uint8 images stay on the CPU; batches move to ``device``).
        epochs, batch_size, seed: the training schedule and its seed.
        device: where to train.

    Returns:
        (the classifier in eval mode on the CPU, its training accuracy in the last epoch)
    """
    torch.manual_seed(seed)
    n_classes = int(labels.max()) + 1
    model = SmallClassifier(images.shape[1], n_classes).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(seed)
    correct = 0
    bar = progress(total=epochs * -(-len(images) // batch_size), desc="classifier", unit="steps")
    for epoch in range(epochs):
        perm = torch.randperm(len(images), generator=g)
        correct = 0
        for start in range(0, len(images), batch_size):
            idx = perm[start:start + batch_size]
            y = labels[idx].to(device)
            logits = model(normalise(images[idx].to(device)))  # per batch: a float copy of the split is 4x its size
            loss = F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            correct += int((logits.argmax(1) == y).sum())
            bar.update(1)
        bar.set_postfix(epoch=epoch + 1, accuracy=correct / len(images))
        bar.line()
    bar.close()
    return model.cpu().eval(), correct / len(images)


def save_classifier(model: SmallClassifier, path: str | os.PathLike, meta: dict[str, Any]) -> None:
    save_tensors(path, model.state_dict(), {**meta, "channels": model.body[0].in_channels,
                                            "n_classes": model.head.out_features})


def load_classifier(path: str | os.PathLike) -> SmallClassifier:
    """Load a classifier written by save_classifier; its metadata (dataset, size, ...) is ``model.meta``."""
    tensors, meta = load_tensors(path)
    try:
        check_fields(meta, {"channels": int, "n_classes": int}, path)
    except ValueError as err:
        raise ValueError(f"{path}: not a feature classifier written by vsgm classifier ({err})") from None
    model = SmallClassifier(meta["channels"], meta["n_classes"])
    load_state_strict(model, tensors, path)
    model.meta = meta
    return model.eval()


@torch.no_grad()
def classifier_features(model: SmallClassifier, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Penultimate features of images in [-1, 1]."""
    return torch.cat([model.features(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


def sample_quality(model: SmallClassifier, samples: torch.Tensor, reference: torch.Tensor,
                   real: torch.Tensor | None = None, n_boot: int = N_BOOT, seed: int = 0) -> dict[str, float]:
    """FD, KID, precision and recall (each with its 95% interval) of samples against reference images in
    classifier features (see :mod:`vsgm.quality_metrics`); with ``real`` (as many real images as samples,
    not in the reference set), the same numbers for them under ``{metric}_test_vs_train``: the floor a
    perfect sampler would reach at this count.

    Args:
        model: the feature classifier.
        samples, reference, real: images in [-1, 1].
        n_boot, seed: bootstrap resamples and seed.

    Returns:
        ``{metric, metric_lo, metric_hi}`` entries (and their ``_test_vs_train`` copies).
    """
    ref = classifier_features(model, reference).double().numpy()
    out = quality_metrics(classifier_features(model, samples).double().numpy(), ref, n_boot=n_boot, seed=seed)
    if real is not None:
        floor = quality_metrics(classifier_features(model, real).double().numpy(), ref, n_boot=n_boot, seed=seed)
        out.update({f"{k}_test_vs_train": v for k, v in floor.items()})
    return out


# torchvision's ImageNet weights of Inception-v3 (IMAGENET1K_V1, ported from Google's), where torch.hub keeps them
INCEPTION_FILE = "inception_v3_google-0cc3c7bd.pth"


def hub_checkpoint(name: str) -> Path:
    """Where torch.hub (torchvision's and torch-fidelity's downloads) keeps a weights file:
    $TORCH_HOME/hub/checkpoints."""
    return Path(torch.hub.get_dir()) / "checkpoints" / name


def load_inception(path: str | os.PathLike) -> nn.Module:
    """torchvision's Inception-v3 with the weights in ``path`` (a state dict, read without unpickling objects),
    its classifier removed: the output is the 2048-d pool feature of FID."""
    from torchvision.models import inception_v3

    net = inception_v3(weights=None, aux_logits=True, init_weights=False, transform_input=False)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for a file that is not a state dict
        raise ValueError(f"{path}: not Inception-v3 weights ({err})") from err
    load_state_strict(net, state, path)
    net.fc = nn.Identity()
    return net.eval()


@torch.no_grad()
def inception_features(net: nn.Module, x: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """Pool features of images in [-1, 1] (the input scale of the Google weights), gray ones repeated to RGB,
    resized to 299x299."""
    out = []
    for chunk in progress(x.split(batch_size), desc="inception features", unit="batches"):
        chunk = chunk.expand(-1, 3, -1, -1) if chunk.shape[1] == 1 else chunk
        out.append(net(F.interpolate(chunk.float(), size=(299, 299), mode="bilinear", align_corners=False)))
    return torch.cat(out)


# the TensorFlow FID graph's Inception-v3 (pytorch-fid / torch-fidelity: the FID of published numbers), where
# torch-fidelity's own download would put it; vsgm never downloads it
TF_INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"


def load_tf_inception(path: str | os.PathLike) -> nn.Module:
    """torch-fidelity's re-implementation of the TensorFlow FID Inception-v3 (its 2048-d pool feature), with
    the weights in ``path``; the file is first read without unpickling objects, so only a plain state dict
    reaches torch-fidelity's own loader."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    try:
        torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for a file that is not a state dict
        raise ValueError(f"{path}: not the FID Inception weights ({err})") from err
    return FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(path))


@torch.no_grad()
def tf_inception_features(net: nn.Module, x: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """Pool features of images in [-1, 1] as the FID graph sees them: 8-bit RGB (gray repeated), which it
    resizes to 299x299 as TensorFlow 1 did."""
    out = []
    for chunk in progress(x.split(batch_size), desc="FID inception features", unit="batches"):
        chunk = chunk.expand(-1, 3, -1, -1) if chunk.shape[1] == 1 else chunk
        out.append(net(((chunk.float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8))[0])
    return torch.cat(out)


# per FID entry: its option, the weights file "auto" looks for in hub_checkpoint, the loader, the feature
# function and the package it needs
FID_KINDS = {
    "fid_inception": ("--inception_weights", INCEPTION_FILE, load_inception, inception_features, "torchvision"),
    "fid_tf_inception": ("--tf_inception_weights", TF_INCEPTION_FILE, load_tf_inception, tf_inception_features,
                         "torch_fidelity"),
}


def fid_entries(key: str, weights: str | os.PathLike, samples: torch.Tensor, reference: torch.Tensor,
                real: torch.Tensor | None = None) -> dict[str, Any]:
    """One FID entry of a quality JSON (``key`` in FID_KINDS): the FID and its floor ``{key}_test_vs_train``
    (``real`` training images at the same count), or ``{key}`` None and ``{key}_note`` saying why.

    Args:
        weights: a weights file, ``"auto"`` (the package's cache, if the file is there) or ``"none"``.
    """
    flag, auto_file, load, features, package = FID_KINDS[key]
    if weights == "none":
        return {key: None, f"{key}_note": f"skipped: {flag} none"}
    path = hub_checkpoint(auto_file) if weights == "auto" else Path(weights)
    if not path.exists():
        if weights != "auto":
            raise FileNotFoundError(f"{flag} {path}: no such file")
        return {key: None, f"{key}_note": f"skipped: no weights at {path}"}
    if importlib.util.find_spec(package) is None:
        return {key: None, f"{key}_note": f"skipped: {package} is not installed (pip install -e '.[fid]')"}
    net = load(path)
    ref = features(net, reference).double().numpy()
    out = {key: frechet_distance(features(net, samples).double().numpy(), ref)}
    if real is not None:
        out[f"{key}_test_vs_train"] = frechet_distance(features(net, real).double().numpy(), ref)
    return out


def quality_report(samples_path: str | os.PathLike, classifier_path: str | os.PathLike,
                   reference_path: str | os.PathLike, train_reference: str | os.PathLike | None = None,
                   inception_weights: str | os.PathLike = "auto", n_boot: int = N_BOOT, seed: int = 0,
                   tf_inception_weights: str | os.PathLike = "auto") -> dict[str, Any]:
    """The quality JSON of ``vsgm quality``: samples (``vsgm sample``'s .npz) against prepared reference images
    in the classifier's features (``sample_quality``), with the real-vs-real floor of ``train_reference`` and
    the two Inception FIDs (``fid_entries``), after refusing inputs of different image spaces."""
    samples, info, space = read_samples(samples_path)
    clf = load_classifier(classifier_path)
    ref_images, ref_space = prepared_space(reference_path)
    parts = [space, ref_space, classifier_space(clf, classifier_path)]
    if train_reference:
        train, train_space = prepared_space(train_reference)
        parts.append(train_space)
    check_same_space(parts)
    ref = normalise(ref_images)
    result = {"dataset": info.get("dataset"), "model": info.get("model"), "sampler": info["sampler"],
              "denoise": info.get("denoise", False), "n_samples": len(samples), "n_reference": len(ref)}
    real = None
    if train_reference:
        # the distance a perfect sampler would get with this many samples: real training images vs test
        idx = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[: len(samples)]
        real = normalise(train[idx])
    result.update(sample_quality(clf, samples, ref, real, n_boot=n_boot, seed=seed))
    result.update(fid_entries("fid_inception", inception_weights, samples, ref, real))
    result.update(fid_entries("fid_tf_inception", tf_inception_weights, samples, ref, real))
    return result
