"""Out-of-distribution scorers: per-image features from a trained score model, then scorers on them.

Features (computed once per model and image set, ``features/{set}.parquet``):
- ``loss_t{t}``: the seed's DSM loss at t in {0.001, 0.01, 0.05, 0.1, 0.2}, averaged over
  ``n_draws`` noise draws; all times of a batch run in one forward pass.
- ``norm_{i}``: log of the score norm ||std(t_i) s(x, t_i)|| of the clean image at ``levels``
  noise levels spaced evenly in log std (multi-scale score matching, Mahmood et al. 2021).
- ``bpd``: bits/dim by the probability-flow ODE (optional; many evaluations).

Scorers (a registry; higher = more out-of-distribution, never flipped):
- ``loss``: the seed's score, the mean of the loss columns (one-sided: it misses outliers
  that are *simpler* than the training data).
- ``msma``: negative log-density of a Gaussian mixture fitted on the score-norm vectors of
  in-distribution *training* images; the number of components is chosen by BIC on those same
  training images, so no outlier set ever informs a hyperparameter. Catches both directions.
- ``msma_knn``: mean distance to the k nearest in-distribution training vectors (the KD-tree
  variant of MSMA, their best): no density assumption, stronger where the feature cloud is
  not Gaussian.
- ``fisher``: Fisher's combination of ``loss`` and ``msma_knn`` (Bergamin et al., AISTATS 2022): each
  becomes a p-value against the in-distribution training images, and the score is
  -2 (log p_loss + log p_knn). It keeps the loss's view of outliers that are too complex and the
  multi-scale distance's view of those that are too simple.
- ``bpd``: bits/dim (higher = less likely).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from sklearn.mixture import GaussianMixture
from sklearn.neighbors import NearestNeighbors
from sklearn.preprocessing import StandardScaler

from .guards import check_table, read_json
from .io import sidecar
from .likelihood import bits_per_dim, log_likelihood
from .losses import dsm_loss_at
from .models import TrainedModel
from .progress import progress as progress_bar
from .options import defaults
from .samplers import Grid, Solver
from .scorer_table import SCORER_PASSES, SCORER_TABLE
from .scorer_table import available_scorers as _available_for
from .score_function import network_output

LOSS_TIMES = (0.001, 0.01, 0.05, 0.1, 0.2)
_DEFAULT = defaults("features")  # the command line's defaults are the library's


@dataclasses.dataclass(frozen=True)
class FeatureConfig:
    """What to compute per image.

    Args:
        loss_times: times of the seed's loss score.
        n_draws: noise draws per time for the loss (the seed: 1).
        levels: number of noise levels of the multi-scale score norms.
        t_min, t_max: time range of those levels (spaced evenly in log std); by default the whole range
            the seed trains on, [eps = 1e-3, 1], as MSMA spans all of its model's noise scales.
        bpd: also compute bits/dim (costly).
        bpd_steps: rk4 steps on the log-std grid for bits/dim.
        seed: noise seed (features are deterministic given it).
    """

    loss_times: Sequence[float] = LOSS_TIMES
    n_draws: int = _DEFAULT["n_draws"]
    levels: int = _DEFAULT["levels"]
    t_min: float = 1e-3
    t_max: float = 1.0
    bpd: bool = _DEFAULT["bpd"]
    bpd_steps: int = _DEFAULT["bpd_steps"]
    seed: int = 0

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> "FeatureConfig":
        """The config of the command-line options of the ``features`` group (and ``seed``)."""
        return cls(**{k: options[k] for k in (*_DEFAULT, "seed")})

    def settings(self) -> dict[str, Any]:
        """Every field, JSON-ready: what the features' sidecar records."""
        return {**dataclasses.asdict(self), "loss_times": list(self.loss_times)}

    def columns(self) -> tuple[list[str], list[str]]:
        """Names of the loss columns and of the score-norm columns of a feature table."""
        return [f"loss_t{t:g}" for t in self.loss_times], [f"norm_{i}" for i in range(self.levels)]

    def nfe(self) -> dict[str, int]:
        """Network evaluations per image for each scorer."""
        per_pass = {"loss": len(self.loss_times) * self.n_draws, "norms": self.levels,
                    "bpd": 4 * self.bpd_steps * 2 if self.bpd else 0}  # rk4: 4 per step; vjp ~ 2 forwards
        return {name: sum(per_pass[p] for p in passes) for name, passes in SCORER_PASSES.items()}


def level_times(model: TrainedModel, cfg: FeatureConfig) -> torch.Tensor:
    """Times whose marginal std is evenly spaced in log between std(t_min) and std(t_max)."""
    sde = model.sde
    lo, hi = sde.log_std(cfg.t_min), sde.log_std(cfg.t_max)
    return sde.time_from_log_std(torch.linspace(lo, hi, cfg.levels, dtype=torch.float64)).float()


NOISE_BLOCK = 64


# noise streams of image_noise: the loss's Gaussian draws, and bits/dim's Hutchinson vectors
LOSS_STREAM, BPD_STREAM = 0, 1


def image_noise(shape: tuple[int, ...], start: int, copies: int, seed: int, device, stream: int = LOSS_STREAM
                ) -> torch.Tensor:
    """Standard normal noise for images start..start+shape[0], ``copies`` draws each, laid out copy-major
    (copy j of image i at row j * n + i). Drawn in fixed blocks of images with their own seeds (one set of
    seeds per ``stream``), so an image's noise does not depend on the batch size it is scored in."""
    n, rest = shape[0], shape[1:]
    first, last = start // NOISE_BLOCK, (start + n - 1) // NOISE_BLOCK
    blocks = []
    for block in range(first, last + 1):
        g = torch.Generator().manual_seed(seed * 1_000_003 + block + stream * 2**40)
        blocks.append(torch.randn((NOISE_BLOCK, copies, *rest), generator=g))
    noise = torch.cat(blocks)[start - first * NOISE_BLOCK:][:n]
    return noise.transpose(0, 1).reshape(copies * n, *rest).to(device)


@torch.no_grad()
def loss_features(model: TrainedModel, x: torch.Tensor, times: Sequence[float], n_draws: int,
                  noise: torch.Tensor) -> torch.Tensor:
    """The seed's DSM loss per image and time (batch, len(times)); one forward for all times and draws.

    ``noise`` holds len(times) * n_draws draws per image, copy-major (see image_noise).
    """
    b, k = x.shape[0], len(times) * n_draws
    t = torch.tensor(times, device=x.device, dtype=x.dtype).repeat_interleave(b).repeat(n_draws)
    xs = x.repeat(k, *([1] * (x.dim() - 1)))
    loss = dsm_loss_at(model.net, model.sde, xs, t, noise, _null_labels(model, xs.shape[0], x.device))
    return loss.reshape(n_draws, len(times), b).mean(0).T


@torch.no_grad()
def score_norm_features(model: TrainedModel, x: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
    """log ||std(t) s(x, t)|| of the clean images at each time (batch, len(times)); one forward."""
    b = x.shape[0]
    t = times.to(x.device, x.dtype).repeat_interleave(b)
    xs = x.repeat(len(times), *([1] * (x.dim() - 1)))
    out = network_output(model.net, xs, t, _null_labels(model, xs.shape[0], x.device), model.sde)
    return out.flatten(1).norm(dim=1).clamp(min=1e-12).log().reshape(len(times), b).T


def _null_labels(model: TrainedModel, n: int, device) -> torch.Tensor | None:
    """Conditional models are scored unconditionally (the null label)."""
    if model.null_label is None:
        return None
    return torch.full((n,), model.null_label, device=device, dtype=torch.long)


def bpd_feature(model: TrainedModel, x: torch.Tensor, cfg: FeatureConfig, start: int) -> torch.Tensor:
    """bits/dim by the probability-flow ODE (rk4 on the log-std grid, Hutchinson trace); a conditional
    model's unconditional score, as for the other features. ``start``: the index of x's first image, whose
    Rademacher vectors come from image_noise's fixed blocks (so bits/dim does not depend on the batch size)."""
    from .score_function import make_score_fn

    score = make_score_fn(model.net, model.sde, y=_null_labels(model, len(x), x.device))
    signs = image_noise(tuple(x.shape), start, 1, cfg.seed, x.device, BPD_STREAM)
    logp, _ = log_likelihood(score, model.sde, x, eps=model.options["eps"], solver=Solver.rk4, grid=Grid.logstd,
                             num_steps=cfg.bpd_steps, noise=torch.where(signs >= 0, 1.0, -1.0).to(x.dtype))
    return bits_per_dim(logp, x[0].numel())


def outlier_features(model: TrainedModel, images: torch.Tensor, cfg: FeatureConfig, batch_size: int = 256,
                     device: str | torch.device = "cpu", progress: bool = True) -> pd.DataFrame:
    """Per-image feature table for uint8 images already in the model's channels and size.

    Args:
        model: a trained model.
        images: uint8 (N, C, H, W).
        cfg: what to compute.
        batch_size: images per forward (each forward holds len(times) copies).
        device: where to compute.
        progress: show a progress bar.

    Returns:
        DataFrame with one row per image: ``index`` and the feature columns.
    """
    if images.dtype != torch.uint8:
        raise ValueError(f"expected uint8 images, got {images.dtype}")
    if tuple(images.shape[1:]) != (model.channels, *([model.size] * model.options["dims"])):
        raise ValueError(f"images of shape {tuple(images.shape[1:])} do not match the model "
                         f"({model.channels} channels, size {model.size}); prepare them for this model")
    times = level_times(model, cfg)
    cols: dict[str, list[np.ndarray]] = {}
    batches = progress_bar(range(0, len(images), batch_size), desc="features", unit="batches", disable=not progress)
    for start in batches:
        x = model.to_input(images[start:start + batch_size].to(device))
        noise = image_noise(tuple(x.shape), start, len(cfg.loss_times) * cfg.n_draws, cfg.seed, device)
        losses = loss_features(model, x, cfg.loss_times, cfg.n_draws, noise)
        loss_names, norm_names = cfg.columns()
        parts = dict(zip(loss_names, losses.T)) | dict(zip(norm_names, score_norm_features(model, x, times).T))
        if cfg.bpd:
            parts["bpd"] = bpd_feature(model, x, cfg, start)
        for k, v in parts.items():
            cols.setdefault(k, []).append(v.double().cpu().numpy())
    df = pd.DataFrame({k: np.concatenate(v) for k, v in cols.items()})
    df.insert(0, "index", np.arange(len(images)))
    return df


# -- scorers -----------------------------------------------------------------------------------

def _cols(df: pd.DataFrame, prefix: str) -> list[str]:
    return [c for c in df.columns if c.startswith(prefix)]


class LossScorer:
    """The seed's score: mean DSM loss over its five times. Needs no fitting."""

    name = "loss"

    def fit(self, train: pd.DataFrame) -> "LossScorer":
        return self

    def score(self, df: pd.DataFrame) -> np.ndarray:
        return df[_cols(df, "loss_t")].to_numpy().mean(1)


class MSMAScorer:
    """Negative log-density of a Gaussian mixture on multi-scale score norms (Mahmood et al., ICLR 2021).

    Args:
        components: candidate mixture sizes; the one with the lowest BIC on the training features wins.
        seed: GMM initialisation seed.
    """

    name = "msma"

    def __init__(self, components: Sequence[int] = (1, 2, 4, 8), seed: int = 0):
        self.components, self.seed = tuple(components), seed
        self.gmm: GaussianMixture | None = None
        self.scaler: StandardScaler | None = None

    def fit(self, train: pd.DataFrame) -> "MSMAScorer":
        x = train[_cols(train, "norm_")].to_numpy()
        self.scaler = StandardScaler().fit(x)
        z = self.scaler.transform(x)
        fits = [GaussianMixture(k, covariance_type="full", random_state=self.seed, reg_covar=1e-4).fit(z)
                for k in self.components if k <= len(z) // 10 or k == 1]
        self.gmm = min(fits, key=lambda g: g.bic(z))
        return self

    def score(self, df: pd.DataFrame) -> np.ndarray:
        if self.gmm is None:
            raise RuntimeError("fit the msma scorer on in-distribution training features first")
        return -self.gmm.score_samples(self.scaler.transform(df[_cols(df, "norm_")].to_numpy()))


class KNNScorer:
    """Mean Euclidean distance to the ``k`` nearest standardised score-norm vectors of the
    in-distribution training images (MSMA's nearest-neighbour variant).

    Args:
        k: neighbours (fixed, not tuned on any outlier set).
    """

    name = "msma_knn"

    def __init__(self, k: int = 5):
        self.k = k
        self.index: NearestNeighbors | None = None
        self.scaler: StandardScaler | None = None

    def fit(self, train: pd.DataFrame) -> "KNNScorer":
        x = train[_cols(train, "norm_")].to_numpy()
        if len(x) < 2:
            raise ValueError("the msma_knn scorer needs at least two in-distribution training images")
        self.scaler = StandardScaler().fit(x)
        self.index = NearestNeighbors(n_neighbors=min(self.k, len(x) - 1)).fit(self.scaler.transform(x))
        return self

    def training_scores(self) -> np.ndarray:
        """Each training vector's score leave-one-out (its distance to the others): distributed as a new
        in-distribution image's score, where scoring the training vectors themselves would count each as its
        own nearest neighbour."""
        if self.index is None:
            raise RuntimeError("fit the msma_knn scorer on in-distribution training features first")
        dist, _ = self.index.kneighbors()
        return dist.mean(1)

    def score(self, df: pd.DataFrame) -> np.ndarray:
        if self.index is None:
            raise RuntimeError("fit the msma_knn scorer on in-distribution training features first")
        dist, _ = self.index.kneighbors(self.scaler.transform(df[_cols(df, "norm_")].to_numpy()))
        return dist.mean(1)


def tail_p_values(reference: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Conformal p-values of ``scores`` against in-distribution ``reference`` scores: (1 + #{ref >= s}) / (n + 1),
    uniform for a new in-distribution image, small for an outlier."""
    ref = np.sort(reference)
    return (1 + len(ref) - np.searchsorted(ref, scores, side="left")) / (len(ref) + 1)


class FisherScorer:
    """Fisher's method over the seed's one-sided loss and the two-sided multi-scale distance (Bergamin et al.,
    "Model-agnostic out-of-distribution detection using combined statistical tests", AISTATS 2022).

    Both scores are calibrated on the in-distribution training images only (the loss as it is, the
    nearest-neighbour distance leave-one-out), and the outlier score is -2 (log p_loss + log p_knn).
    """

    name = "fisher"

    def fit(self, train: pd.DataFrame) -> "FisherScorer":
        self.loss, self.knn = LossScorer().fit(train), KNNScorer().fit(train)
        self.reference = (self.loss.score(train), self.knn.training_scores())
        return self

    def score(self, df: pd.DataFrame) -> np.ndarray:
        p_loss = tail_p_values(self.reference[0], self.loss.score(df))
        p_knn = tail_p_values(self.reference[1], self.knn.score(df))
        return -2 * (np.log(p_loss) + np.log(p_knn))


class BPDScorer:
    """Bits/dim by the probability-flow ODE (higher = less likely = more out-of-distribution)."""

    name = "bpd"

    def fit(self, train: pd.DataFrame) -> "BPDScorer":
        return self

    def score(self, df: pd.DataFrame) -> np.ndarray:
        return df["bpd"].to_numpy()


# the registry of vsgm.scorer_table's classes, in its order
SCORERS: dict[str, type] = {e.name: globals()[e.cls] for e in SCORER_TABLE}


def available_scorers(features: pd.DataFrame) -> list[str]:
    """The scorers whose features are present in a feature table."""
    return _available_for(features.columns)


def score_table(train: pd.DataFrame, target: pd.DataFrame, scorers: Sequence[str] | None = None) -> pd.DataFrame:
    """Fit each scorer on in-distribution training features and score ``target`` (one column per scorer)."""
    scorers = list(scorers or available_scorers(target))
    unknown = [s for s in scorers if s not in SCORERS]
    if unknown:
        raise ValueError(f"unknown scorer(s) {unknown}; valid: {sorted(SCORERS)}")
    if "bpd" in scorers and not {"bpd"} <= set(train.columns) & set(target.columns):
        raise ValueError("the bpd scorer needs bits/dim features: compute them with vsgm features --bpd")
    out = pd.DataFrame({"index": target["index"].to_numpy()})
    for name in scorers:
        out[name] = SCORERS[name]().fit(train).score(target)
    return out


def check_feature_table(df: pd.DataFrame, path: Any) -> None:
    """Refuse a table that is not vsgm features' output: ``index``, ``loss_t*`` and ``norm_0..norm_{L-1}``
    columns (``bpd`` optional), numeric and finite, one line naming the file."""
    check_table(df, path)
    cols = [c for c in df.columns if c != "index"]
    loss = [c for c in cols if str(c).startswith("loss_t")]
    norms = [c for c in cols if str(c).startswith("norm_")]
    unknown = [c for c in cols if c not in loss + norms + ["bpd"]]
    if unknown:
        raise ValueError(f"{path}: column(s) {unknown[:5]} are not features of vsgm features")
    if not loss or not norms:
        raise ValueError(f"{path}: a feature table needs loss_t* and norm_* columns; has {cols[:8]}")
    if sorted(norms) != sorted(f"norm_{i}" for i in range(len(norms))):
        raise ValueError(f"{path}: norm columns must be norm_0..norm_{len(norms) - 1}, got {norms}")


def align_features(train: pd.DataFrame, target: pd.DataFrame, train_path: Any, target_path: Any) -> pd.DataFrame:
    """``target`` with its columns matched by name to ``train``'s (their order is the training table's), after
    refusing either table's shape (check_feature_table) and a target that lacks or adds columns: the scorers
    read columns by position, so another order or another set of columns would give another score.

    Returns:
        ``target``, its columns in ``train``'s order.
    """
    check_feature_table(train, train_path)
    check_feature_table(target, target_path)
    missing = [c for c in train.columns if c not in target.columns]
    extra = [c for c in target.columns if c not in train.columns]
    if missing or extra:
        raise ValueError(f"{target_path}: its columns differ from the training features' {train_path} "
                         f"(missing {missing[:5]}, extra {extra[:5]}): compute both with the same options")
    return target[list(train.columns)]


def features_sidecar(cfg: FeatureConfig, n: int, data: Any, dataset: Any) -> dict[str, Any]:
    """What vsgm features writes beside its table: the NFE per scorer, the rows, their source, and the
    ``FeatureConfig`` they were computed with (``features``, read by ``check_feature_settings``)."""
    return {"nfe": cfg.nfe(), "n": n, "data": str(data), "dataset": dataset, "features": cfg.settings()}


def _recorded_settings(path: Any, told: Mapping[str, Any]) -> dict[str, Any] | None:
    side = sidecar(path, ".parquet")
    settings = read_json(side).get("features") if side.is_file() else None
    if settings is None and told:
        raise ValueError(f"{path}: no {side.name} beside it records the settings its features were computed "
                         f"with, so {', '.join(f'--{k}' for k in told)} cannot be checked: compute them with vsgm "
                         "features")
    for key, value in told.items():
        if settings.get(key) != value:
            raise ValueError(f"{path}: features computed with --{key} {settings.get(key)}, not the --{key} {value} "
                             "given here: compute them again or drop the option")
    return settings


def check_feature_settings(paths: Sequence[Any], told: Mapping[str, Any]) -> None:
    """Refuse feature tables computed with other settings than ``told`` (option -> value; None: not told) or
    than each other, as their sidecars (``features_sidecar``) record them; one line naming the file. A table
    without a sidecar is checked only by its columns (``align_features``) unless settings are told."""
    told = {k: v for k, v in told.items() if v is not None}
    recorded = [(p, s) for p in paths if (s := _recorded_settings(p, told)) is not None]
    for (first, a), (path, b) in zip(recorded, recorded[1:]):
        differ = sorted(k for k in {*a, *b} if a.get(k) != b.get(k))
        if differ:
            raise ValueError(f"{path}: features computed with {', '.join(f'{k}={b.get(k)}' for k in differ)}, "
                             f"{first} with {', '.join(f'{k}={a.get(k)}' for k in differ)}: compute both with the "
                             "same options")


def fit_split(n: int, fraction: float = 0.8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic split of the in-distribution training images into a part the detectors are fitted on
    and a held-out part for the train-vs-test sanity row."""
    perm = np.random.default_rng(seed).permutation(n)
    cut = int(math.floor(n * fraction))
    return np.sort(perm[:cut]), np.sort(perm[cut:])


def outlier_scores(train: pd.DataFrame, targets: Sequence[pd.DataFrame], seed: int = 0,
                   scorers: Sequence[str] | None = None) -> tuple[list[pd.DataFrame], pd.DataFrame]:
    """Fit the scorers on the fitting part of the in-distribution training features (``fit_split``) and score
    each of ``targets`` and the held-out part of ``train`` (the sanity row).

    Returns:
        the score tables of ``targets``, and the held-out training images' scores.
    """
    fit_rows, holdout = fit_split(len(train), seed=seed)
    fitted = train.iloc[fit_rows]
    return [score_table(fitted, t, scorers) for t in targets], score_table(fitted, train.iloc[holdout], scorers)


def detect_outliers(model: TrainedModel, images: Mapping[str, torch.Tensor], cfg: FeatureConfig, in_name: str,
                    out_name: str, batch_size: int = 256, device: str | torch.device = "cpu") -> pd.DataFrame:
    """The seed's outlier detection for one pair: features of the model's training and test images and of the
    outliers (``images``: ``train``, ``test``, ``outliers``, uint8 in the model's space), the scorers fitted on
    the training features (``cfg.seed`` splits them), and the pair's table (``vsgm.tables.pair_table``)."""
    from .tables import pair_table

    feats = {k: outlier_features(model, images[k], cfg, batch_size=batch_size, device=device)
             for k in ("train", "test", "outliers")}
    (ins, outs), sanity = outlier_scores(feats["train"], [feats["test"], feats["outliers"]], seed=cfg.seed)
    return pair_table(in_name, out_name, ins, outs, sanity, cfg.nfe())
