"""The workflow's logic, importable and tested: the config check (after the schema's, in
:mod:`vsgm.workflow_schema`), the jobs a config asks for, the flags of their commands and their memory
requests.

The Snakefile builds one :class:`Plan` from the config (:meth:`Plan.checked` refuses a bad config
in one line) and its rules ask it for flags, target lists and memory estimates. Torch-free, and
free of Snakemake: the Snakefile imports it from the source tree to parse the DAG, with only
Snakemake installed.
"""

from __future__ import annotations

import math
import os
import re
import shlex
from typing import Any

import yaml

from vsgm.checks import combination_problems, range_problems
from vsgm.data.registry import Source, dataset_names, get_info, medmnist_size, native_size
from vsgm.replicates import base_of, instances, replicate_of
from vsgm.unet_config import UNetConfig
from vsgm.workflow_schema import ConfigError, schema_problem

PREPARED = "resources/prepared"
# feature sets of a model besides its OOD sets: its own train split (the scorers are fitted on it;
# a held-out part is the sanity row) and its own test split (the in-distribution side of every pair)
OWN_SETS = ("train", "test")
# the prepared split of the training images the scorers are fitted on when
# features.max_train_images is set (a seeded subset of the training images)
TRAIN_SUBSET = "trainsub"

AGGREGATES = {
    "auroc": "results/auroc.csv",
    "auroc_md": "results/auroc.md",
    "auroc_png": "results/auroc.png",
    "solvers": "results/solvers.csv",
    "samples": "results/samples.png",
    "loss": "results/loss.png",
}
SWEEP_AGGREGATES = {
    "sweep": "results/solver_sweep.csv",
    "efficiency": "results/solver_efficiency.csv",
    "sweep_png": "results/solver_sweep.png",
}
# the aggregate files the report shows: name -> (caption file in workflow/report/, label)
AGGREGATE_CAPTIONS = {
    "auroc": ("auroc.rst", "AUROC (long form)"),
    "auroc_png": ("auroc_png.rst", "AUROC heatmap"),
    "solvers": ("solvers.rst", "samplers"),
    "samples": ("samples_montage.rst", "sample grids"),
    "efficiency": ("solver_efficiency.rst", "solver efficiency"),
    "sweep_png": ("solver_sweep.rst", "quality against NFE"),
    "loss": ("loss.rst", "training loss"),
}


# -- the checks a schema cannot make ----------------------------------------------------------------


def unet_problems(config: dict) -> list[str]:
    """What the UNet would refuse when a model is built (vsgm.unet_config.UNetConfig.validate),
    one line per message with the models it applies to."""
    models: dict[str, list[str]] = {}
    for model, space in config["models"].items():
        unet = UNetConfig(image_size=space["size"], in_channels=space["channels"], **config["unet"])
        try:
            unet.validate()
        except ValueError as err:
            models.setdefault(str(err), []).append(f"models.{model}")
    return [f"unet for {', '.join(m)}: {message}" for message, m in models.items()]


def option_problems(config: dict) -> list[str]:
    """What vsgm's commands would refuse in their options, before any job: every number in its range
    and finite (vsgm.checks.range_problems), and the training options together (the check vsgm train
    runs)."""
    problems = range_problems(config)
    if problems:
        return problems
    options = {**config["unet"], **config["sde"], **config["train"], "cfg": config["sample"]["cfg"]}
    return [f"train: {p}" for p in combination_problems(options)]


def time_blind_problem(config: dict) -> str | None:
    """A UNet whose GroupNorm removes the time embedding at some width (a model partly or wholly blind
    to the noise level), unless unet_allow_time_blind is set: one line naming the widths and the
    remedies."""
    unet = config["unet"]
    blind = UNetConfig(**unet).widths_without_time()
    if not blind or config["unet_allow_time_blind"]:
        return None
    return (
        f"unet: at width(s) {blind} (model_channels {unet['model_channels']} x "
        f"channel_mult {unet['channel_mult']}) GroupNorm has one channel per group and removes "
        "the time embedding, so the models are blind to the noise level there; set "
        "unet.use_scale_shift_norm: true, or widths that do not divide 32 (e.g. model_channels "
        "48 or 64), or unet_allow_time_blind: true to keep the seed's exact network"
    )


def config_problems(config: dict) -> list[str]:
    """What a schema cannot check in a schema-valid config: registry names, keys that must exist,
    OOD lists, the UNet and the commands' option checks."""
    plan = Plan(config)
    problems = []
    known = set(dataset_names())
    for key, entry in config["datasets"].items():
        if entry["dataset"] not in known:
            problems.append(
                f"datasets.{key}.dataset: unknown dataset {entry['dataset']!r}; valid: {', '.join(dataset_names())}"
            )
        elif entry["classes"] is not None:
            n = get_info(entry["dataset"]).num_classes
            bad = [c for c in entry["classes"] if c >= n]
            if bad:
                problems.append(f"datasets.{key}.classes: {bad} out of range ({entry['dataset']} has labels 0-{n - 1})")
    for model, entry in config["models"].items():
        if model not in config["datasets"]:
            problems.append(f"models.{model}: not a key of datasets ({', '.join(config['datasets'])})")
        for where, sets in ((f"models.{model}.ood", entry["ood"]), ("ood.sets", config["ood"]["sets"])):
            if isinstance(sets, list):
                missing = [s for s in sets if s not in config["datasets"]]
                if missing:
                    problems.append(f"{where}: {missing} not keys of datasets")
    if not problems and not any(plan.ood_sets(m) for m in config["models"]):
        problems.append(
            "ood.sets / models.*.ood: no model is left with an out-of-distribution set (a model's "
            "own set and the sets sharing its images are left out), so there is no pair to score"
        )
    return problems + unet_problems(config) + option_problems(config) + plan.ood_list_problems()


def cli_flags(values: dict[str, Any]) -> str:
    """``{name: value}`` -> ``--name value`` flags of the vsgm CLI (booleans as --name/--no-name,
    lists space-separated, None left out), sorted by name: Snakemake compares params as strings, so
    the order of keys in a config must not look like a change."""
    parts = []
    for name, value in sorted(values.items()):
        if value is None:
            continue
        if isinstance(value, bool):
            parts.append(f"--{name}" if value else f"--no-{name}")
        elif isinstance(value, (list, tuple)):
            parts.append(f"--{name}")
            parts.extend(shlex.quote(str(v)) for v in value)
        else:
            parts.extend([f"--{name}", shlex.quote(str(value))])
    return " ".join(parts)


def _alternation(names) -> str:
    return "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True)) or "(?!)"


# -- memory ---------------------------------------------------------------------------------------
# The rules that hold prepared images ask for mem_mb by the dataset: the bytes their command keeps
# in memory at once, from the images of the split (the registry's count, capped as the config caps
# it; a class filter is not counted, it only removes images) and their size, never less than the
# rule's default (its floor). A profile that sets mem_mb for one of these rules replaces this.

MB = 1_000_000
# python, torch and vsgm before any data (about 700 MiB on a CPU)
RUNTIME_MB = 1000
# the same with the CUDA libraries and context, for the rules that a profile puts on a GPU (an
# allowance, not measured)
CUDA_RUNTIME_MB = 3000
# per image of an image folder: its path and its label (about 0.35 kB measured; an allowance)
LISTING_BYTES = 1000
# bytes per pixel of images held as uint8 and as the float32 copy of vsgm.data.loader.normalise
FLOAT_COPY = 5


def mem_mb(held_bytes: int, floor: int, runtime_mb: int = RUNTIME_MB) -> int:
    """A job's mem_mb: runtime_mb plus the bytes its command holds, at least floor."""
    return max(floor, runtime_mb + math.ceil(held_bytes / MB))


def imported_model(model: str) -> bool:
    """Whether results/{model}/ holds a model imported from the seed (vsgm import-seed)."""
    meta = os.path.join("results", model, "model.json")
    if not os.path.exists(meta):
        return False
    with open(meta) as f:
        return "imported_from" in yaml.safe_load(f)


class Plan:
    """The jobs of one (checked) config: names and sets, the files the rules read, their flags, their
    memory and the targets. Model arguments may name a replicate (``digits-r1``)."""

    def __init__(self, config: dict):
        self.config = config

    @classmethod
    def checked(cls, config: dict, schema: dict) -> Plan:
        """Check the config (typing the strings of --config and filling in the schema's defaults, in
        place) and plan it; a bad config raises one ConfigError naming every problem found."""
        problem = schema_problem(config, schema)
        if problem:
            raise ConfigError(f"invalid config: {problem}")
        problems = config_problems(config)
        if problems:
            raise ConfigError(f"invalid config: {'; '.join(problems)}")
        problem = time_blind_problem(config)
        if problem:
            raise ConfigError(f"invalid config: {problem}")
        return cls(config)

    # -- names and sets

    def registry_name(self, key: str) -> str:
        """The registry dataset behind a dataset key (or a model's replicate)."""
        return self.config["datasets"][base_of(key)]["dataset"]

    def model_keys(self) -> list[str]:
        return list(self.config["models"])

    def model_instances(self) -> list[str]:
        """Every replicate of every model (replicate 0 under the model's key, r > 0 as KEY-rR)."""
        return instances(self.model_keys(), self.config["replicates"])

    def samplers(self) -> list[str]:
        return list(self.config["samplers"])

    def shares_images(self, a: str, b: str) -> bool:
        """Whether dataset keys a and b can hold the same images (same registry set, overlapping classes)."""
        if self.registry_name(a) != self.registry_name(b):
            return False
        ca, cb = self.config["datasets"][a]["classes"], self.config["datasets"][b]["classes"]
        return ca is None or cb is None or bool(set(ca) & set(cb))

    def ood_sets(self, model: str) -> list[str]:
        """The out-of-distribution sets of a model or one of its replicates (dataset keys)."""
        model = base_of(model)
        sets = self.config["models"][model]["ood"]
        if sets is None:
            sets = self.config["ood"]["sets"]
        if sets == "all":
            return [k for k in self.config["datasets"] if k != model and not self.shares_images(k, model)]
        return [k for k in sets if k != model]

    def ood_list_problems(self) -> list[str]:
        """An explicit list of outlier sets must not hold a model's own set (models.X.ood) or a set
        sharing its images (same registry set, overlapping classes): its AUROC would be near 0.5."""
        config, problems = self.config, []
        for model, entry in config["models"].items():
            if model not in config["datasets"]:
                continue
            for where, sets, own_ok in ((f"models.{model}.ood", entry["ood"], False),
                                        ("ood.sets", config["ood"]["sets"], True)):
                if not isinstance(sets, list):
                    continue
                bad = [s for s in sets
                       if s in config["datasets"] and (s != model or not own_ok) and self.shares_images(s, model)]
                if bad:
                    problems.append(
                        f"{where}: {bad} share(s) images with model {model} (its own set, or the same "
                        f"dataset with overlapping classes): not outliers of it"
                    )
        return problems

    def constraints(self) -> dict[str, str]:
        """Wildcard constraints: only configured keys, so a path outside the config does not match."""
        keys = set(self.config["datasets"])
        return {
            "model": _alternation(self.model_instances()),
            "key": _alternation(keys),
            "set": _alternation(keys | set(OWN_SETS)),
            "out": _alternation(keys),
            "split": f"train|test|{TRAIN_SUBSET}",
            "sampler": _alternation(self.samplers()) if self.samplers() else "(?!)",
            "res": r"\d+|any",
            "name": _alternation(dataset_names()),
        }

    # -- files

    def download_flag(self, key: str, size: int) -> str:
        """The flag file that says a dataset is in data_root: one per dataset, and for medmnist (one
        file per resolution: 28/64/128/224, the nearest is used) one per resolution."""
        name = self.registry_name(key)
        res = str(medmnist_size(size)) if get_info(name).source is Source.MEDMNIST else "any"
        return f"{self.config['data_root']}/{name}/.vsgm-download-{res}"

    def prepared(self, model: str, key: str, split: str) -> str:
        """A split of a dataset prepared in a model's space (shared by the model's replicates)."""
        return f"{PREPARED}/{base_of(model)}/{base_of(key)}_{split}.safetensors"

    def set_split(self, model: str, set_: str) -> tuple[str, str]:
        """The dataset key and split a feature set of a model is computed on."""
        if set_ == "train" and self.config["features"]["max_train_images"] is not None:
            return model, TRAIN_SUBSET
        if set_ in OWN_SETS:
            return base_of(model), set_
        return set_, "test"

    def set_data(self, model: str, set_: str) -> str:
        """The prepared file a feature set of a model is computed on."""
        return self.prepared(model, *self.set_split(model, set_))

    def classifier_file(self, model: str) -> str:
        """The feature classifier of a model: one per configured model, shared by its replicates (their
        quality numbers are then in one feature space)."""
        return f"results/{base_of(model)}/classifier.safetensors"

    # -- flags of the commands

    def download_flags(self, name: str, res: str) -> str:
        flags = {"dataset": name, "root": self.config["data_root"]}
        if res != "any":
            flags["size"] = int(res)
        return cli_flags(flags)

    def split_selection(self, split: str) -> dict[str, Any]:
        """The CLI split and image cap of a prepared split name (train, test or the scoring subset)."""
        train_cap, features = self.config["train"]["max_images"], self.config["features"]
        if split == "test":
            return {"split": "test", "max_images": features["max_images"]}
        if split == TRAIN_SUBSET:
            # a prefix of the same seeded permutation as the training subset, so a subset of it
            caps = [c for c in (train_cap, features["max_train_images"]) if c is not None]
            return {"split": "train", "max_images": min(caps)}
        return {"split": "train", "max_images": train_cap}

    def prepare_flags(self, model: str, key: str, split: str) -> str:
        """vsgm prepare: the model's size and channels, the bottleneck of its training set."""
        space = self.config["models"][model]
        flags = {
            "dataset": self.registry_name(key),
            "root": self.config["data_root"],
            "size": space["size"],
            "channels": space["channels"],
            "bottleneck": native_size(self.registry_name(model), space["size"]),
            "classes": self.config["datasets"][key]["classes"],
            "seed": self.config["seed"],
        }
        flags.update(self.split_selection(split))
        return cli_flags(flags)

    def train_flags(self, model: str) -> str:
        """vsgm train: the UNet, SDE and training options under the seed's names; replicate r trains
        with seed + r."""
        config = self.config
        flags = {"dataset": self.registry_name(model), "seed": config["seed"] + replicate_of(model)}
        flags.update(config["unet"])
        flags.update(config["sde"])
        flags.update({k: v for k, v in config["train"].items() if k != "max_images"})
        flags["log_with"] = config["tracking"]  # "none" unless the config names a tracker
        # the progress grids take vsgm train's own sampling defaults: a sample: setting must not retrain
        return cli_flags(flags)

    def launch_flags(self, gpus: int, threads: int) -> str:
        """accelerate launch: one process per GPU of the job, else one CPU process."""
        flags = {
            "num_machines": 1,
            "mixed_precision": self.config["train"]["mixed_precision"],
            "dynamo_backend": "no",
            "num_cpu_threads_per_process": threads,
        }
        if gpus > 0:
            flags["num_processes"] = gpus
            # port 0: accelerate picks a free port when the job starts, so two multi-GPU jobs on one
            # node do not both take the default 29500
            multi = " --multi_gpu --main_process_port 0" if gpus > 1 else ""
            return f"{cli_flags(flags)}{multi}"
        flags["num_processes"] = 1
        return f"--cpu {cli_flags(flags)}"

    def sample_flags(self) -> str:
        """vsgm sample (the same for every sampler)."""
        s = self.config["sample"]
        names = ("num_samples", "num_steps", "atol", "rtol", "snr", "cfg", "batch_size", "denoise")
        return cli_flags({**{k: s[k] for k in names}, "seed": self.config["seed"]})

    def features_flags(self) -> str:
        f = self.config["features"]
        names = ("n_draws", "levels", "bpd", "bpd_steps", "batch_size")
        return cli_flags({**{k: f[k] for k in names}, "seed": self.config["seed"]})

    def score_flags(self, set_: str) -> str:
        """--holdout for the model's own training images: score only the part the scorers were not
        fitted on (the sanity row)."""
        holdout = " --holdout" if set_ == "train" else ""
        return f"--seed {self.config['seed']}{holdout}"

    def sweep_flags(self) -> str:
        s = self.config["sweep"]
        flags = {k: s[k] for k in ("steps", "tolerances", "num_samples", "batch_size")}
        flags["samplers"] = s["samplers"] if s["samplers"] is not None else self.samplers()
        flags["seed"] = self.config["seed"]
        flags["denoise"] = self.config["sample"]["denoise"]
        return cli_flags(flags)

    # -- bytes held in memory (see mem_mb)

    def _split_images(self, key: str, split: str, capped: bool = True) -> int | None:
        """At most how many images a prepared split of a dataset key holds (None: not known)."""
        count = get_info(self.registry_name(key)).split_images("train" if split == TRAIN_SUBSET else split)
        cap = self.split_selection(split)["max_images"] if capped else None
        known = [n for n in (count, cap) if n is not None]
        return min(known) if known else None

    def _split_bytes(self, model: str, key: str, split: str, per_pixel: int = 1) -> int:
        """Bytes of a prepared split held in memory (uint8, or per_pixel bytes per pixel); 0 when unknown."""
        space = self.config["models"][base_of(model)]
        return (self._split_images(key, split) or 0) * space["channels"] * space["size"] ** 2 * per_pixel

    def prepare_bytes(self, model: str, key: str, split: str) -> int:
        """vsgm prepare: the raw split (the library's arrays and the images picked from them, or the
        folder's listing and the decoded images) and the converted images, held together."""
        name, space = self.registry_name(key), self.config["models"][model]
        info = get_info(name)
        total = self._split_images(key, split, capped=False) or 0
        kept = self._split_images(key, split) or 0
        bottleneck = native_size(self.registry_name(model), space["size"])
        load = space["size"] if bottleneck is None else min(space["size"], bottleneck)
        if any(f.endswith("/") for f in info.files()):
            # image folders: listed whole, the kept images decoded to RGB at load
            raw = total * LISTING_BYTES + kept * 3 * load**2
        else:
            # arrays: the whole split at its stored size (generated sets: at load) and a contiguous
            # copy (CIFAR, SVHN), then the kept images picked from it
            side = native_size(name, load) or load
            raw = (2 * total + kept) * info.channels * side**2
        return raw + self._split_bytes(model, key, split)

    def train_split_bytes(self, model: str) -> int:
        """vsgm train and vsgm classifier: the training split, uint8 (training: in each process, one
        per GPU of the job; the classifier converts it to float a batch at a time)."""
        return self._split_bytes(model, model, "train")

    def quality_bytes(self, model: str) -> int:
        """vsgm quality: the test split as float32 (loaded as uint8 first) and the training split as
        uint8 (only the few images it compares are converted)."""
        return self._split_bytes(model, model, "test", FLOAT_COPY) + self._split_bytes(model, model, "train")

    def sweep_bytes(self, model: str) -> int:
        """vsgm sweep: the test split as float32 (loaded as uint8 first)."""
        return self._split_bytes(model, model, "test", FLOAT_COPY)

    def features_bytes(self, model: str, set_: str) -> int:
        """vsgm features: the set's prepared split, uint8."""
        return self._split_bytes(model, *self.set_split(model, set_))

    # -- targets

    def ood_tables(self) -> list[str]:
        return [f"results/{m}/ood_{o}.csv" for m in self.model_instances() for o in self.ood_sets(m)]

    def sample_files(self, ext: str) -> list[str]:
        return [f"results/{m}/samples/{s}.{ext}" for m in self.model_instances() for s in self.samplers()]

    def quality_files(self) -> list[str]:
        if not self.config["sample"]["quality"]:
            return []
        return [f"results/{m}/quality/{s}.json" for m in self.model_instances() for s in self.samplers()]

    def paired_files(self) -> list[str]:
        """One paired comparison of all samplers per model (with sample.quality)."""
        if not self.config["sample"]["quality"]:
            return []
        return [f"results/{m}/quality/paired.csv" for m in self.model_instances()]

    def sweep_files(self) -> list[str]:
        if not self.config["sweep"]["enabled"]:
            return []
        return [f"results/{m}/solver_sweep.csv" for m in self.model_instances()]

    def aggregate_inputs(self) -> dict[str, list[str]]:
        """Exactly the files this config produces (nothing is globbed)."""
        return {
            "ood": self.ood_tables(),
            "samples": self.sample_files("json"),
            "grids": self.sample_files("png"),
            "quality": self.quality_files(),
            "paired": self.paired_files(),
            "sweeps": self.sweep_files(),
            "histories": [f"results/{m}/train.csv" for m in self.model_instances()],
        }

    def aggregate_files(self) -> dict[str, str]:
        """The aggregate files: name -> path (with the solver sweep's when it is enabled)."""
        files = dict(AGGREGATES)
        if self.config["sweep"]["enabled"]:
            files.update(SWEEP_AGGREGATES)
        return files

    def all_targets(self) -> list[str]:
        """Everything the default target builds."""
        return [*self.aggregate_files().values(), *self.ood_tables(), *self.sample_files("png")]
