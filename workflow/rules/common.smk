"""Shared helpers of the workflow: config checks, wildcard constraints, paths, input functions
and memory requests.

Rules hold no logic: every input, flag string and target list comes from a function here.
"""

import copy
import math
import os
import re
import shlex
import sys

import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

# The config check needs two torch-free modules of vsgm (the dataset registry, the UNet's option
# check): they are taken from the workflow's own source tree, so the Snakefile parses in an
# environment that holds only Snakemake (--sdm conda builds vsgm's environment for the jobs).
_SOURCE_TREE = os.path.join(workflow.basedir, "src")
if os.path.isdir(os.path.join(_SOURCE_TREE, "vsgm")) and _SOURCE_TREE not in sys.path:
    sys.path.insert(0, _SOURCE_TREE)

from vsgm.data.registry import (
    Source,
    dataset_names,
    get_info,
    medmnist_size,
    native_size,
)
from vsgm.checks import combination_problems, range_problems
from vsgm.replicates import base_of, instances, replicate_of
from vsgm.unet_config import UNetConfig

SCHEMA = "../schemas/config.schema.yaml"
PREPARED = "resources/prepared"
LOGS = "logs"
BENCHMARKS = "benchmarks"
# feature sets of a model besides its OOD sets: its own train split (the scorers are fitted on it;
# a held-out part is the sanity row) and its own test split (the in-distribution side of every pair)
OWN_SETS = ("train", "test")
# the prepared split of the training images the scorers are fitted on when
# features.max_train_images is set (a seeded subset of the training images)
TRAIN_SUBSET = "trainsub"


# -- config -------------------------------------------------------------------------------------


def use_command_line_config(config):
    """Let ``--configfile`` replace config/config.yaml instead of being merged into it.

    Snakemake merges a ``--configfile`` key by key into the Snakefile's ``configfile:``, which
    would add the default run's models and datasets to config/benchmark.yaml or config/test.yaml.
    Here a config given on the command line stands alone: the files given with ``--configfile``
    (merged with each other, in order) plus ``--config KEY=VALUE`` overrides. Without
    ``--configfile``, config/config.yaml plus ``--config`` overrides is used, as usual. The same
    happens in every job process, so cluster jobs see the same config.
    """
    if workflow.overwrite_configfiles:
        replacement = copy.deepcopy(workflow.config_settings.overwrite_config)
        config.clear()
        config.update(replacement)


def _load_schema():
    with open(workflow.source_path(SCHEMA)) as f:
        return yaml.safe_load(f)


def _resolve(schema, root):
    while isinstance(schema, dict) and "$ref" in schema:
        extra = {k: v for k, v in schema.items() if k != "$ref"}
        schema = {**_resolve_ref(schema["$ref"], root), **extra}
    return schema


def _resolve_ref(ref, root):
    node = root
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def _types(schema, root):
    schema = _resolve(schema, root)
    found = set()
    kinds = schema.get("type", [])
    found.update([kinds] if isinstance(kinds, str) else kinds)
    for option in schema.get("anyOf", []) + schema.get("oneOf", []):
        found |= _types(option, root)
    if "const" in schema or "enum" in schema:
        values = [schema["const"]] if "const" in schema else schema["enum"]
        found.update(type(v).__name__ for v in values)
    return found


_YAML_TYPES = {
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
    "array": (list,),
    "object": (dict,),
}


def _coerce(value, schema, root):
    """Type the string leaves of ``--config 'train={n_epochs: 1}'`` (snakemake reads nested
    values as strings) by the schema: a string where the schema wants no string is read as YAML.
    """
    schema = _resolve(schema, root)
    if isinstance(value, dict):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            sub = props.get(key, extra if isinstance(extra, dict) else None)
            if sub is not None:
                value[key] = _coerce(item, sub, root)
        return value
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [_coerce(item, schema["items"], root) for item in value]
    if isinstance(value, str):
        wanted = _types(schema, root)
        if wanted and "string" not in wanted and "str" not in wanted:
            try:
                parsed = yaml.safe_load(value)
            except yaml.YAMLError:
                return value
            allowed = tuple(t for w in wanted for t in _YAML_TYPES.get(w, ()))
            if allowed and isinstance(parsed, allowed):
                return _coerce(parsed, schema, root)
    return value


def _where(error):
    path = ".".join(str(p) for p in error.absolute_path)
    return path or "top level"


def _explain(error):
    """One line naming the offending key: unknown keys with the valid ones, else the value's error."""
    where = _where(error)
    known = error.schema.get("properties") if isinstance(error.schema, dict) else None
    if (
        error.validator == "additionalProperties"
        and known
        and isinstance(error.instance, dict)
    ):
        unknown = sorted(set(error.instance) - set(known))
        prefix = "" if where == "top level" else f"{where}."
        keys = ", ".join(f"{prefix}{k}" for k in unknown)
        return f"unknown key {keys} (valid in {where}: {', '.join(known)})"
    return f"{where}: {error.message}"


def check_config(config):
    """Validate the config against the schema (filling in defaults), then check what a schema
    cannot: registry names, keys that must exist. Raises one WorkflowError naming the key.
    """
    import jsonschema

    _coerce(config, _load_schema(), _load_schema())
    try:
        validate(config, SCHEMA)
    except WorkflowError as err:
        cause = err.__context__  # the jsonschema error snakemake wrapped
        if not isinstance(cause, jsonschema.ValidationError):
            raise
        raise WorkflowError(f"invalid config: {_explain(cause)}") from None
    problems = []
    known = set(dataset_names())
    for key, entry in config["datasets"].items():
        if entry["dataset"] not in known:
            problems.append(
                f"datasets.{key}.dataset: unknown dataset {entry['dataset']!r}; "
                f"valid: {', '.join(dataset_names())}"
            )
        elif entry["classes"] is not None:
            n = get_info(entry["dataset"]).num_classes
            bad = [c for c in entry["classes"] if c >= n]
            if bad:
                problems.append(
                    f"datasets.{key}.classes: {bad} out of range ({entry['dataset']} has labels 0-{n - 1})"
                )
    for model, entry in config["models"].items():
        if model not in config["datasets"]:
            problems.append(
                f"models.{model}: not a key of datasets ({', '.join(config['datasets'])})"
            )
        for where, sets in (
            (f"models.{model}.ood", entry["ood"]),
            ("ood.sets", config["ood"]["sets"]),
        ):
            if isinstance(sets, list):
                missing = [s for s in sets if s not in config["datasets"]]
                if missing:
                    problems.append(f"{where}: {missing} not keys of datasets")
    if not problems and not any(ood_sets(m) for m in config["models"]):
        problems.append(
            "ood.sets / models.*.ood: no model is left with an out-of-distribution set (a model's "
            "own set and the sets sharing its images are left out), so there is no pair to score"
        )
    problems += _unet_problems(config)
    problems += _option_problems(config)
    problems += _ood_list_problems(config)
    if problems:
        raise WorkflowError(f"invalid config: {'; '.join(problems)}")


def _unet_problems(config):
    """What the UNet would refuse when a model is built (vsgm.unet_config.UNetConfig.validate),
    one line per message with the models it applies to."""
    models = {}
    for model, space in config["models"].items():
        unet = UNetConfig(
            image_size=space["size"], in_channels=space["channels"], **config["unet"]
        )
        try:
            unet.validate()
        except ValueError as err:
            models.setdefault(str(err), []).append(f"models.{model}")
    return [f"unet for {', '.join(m)}: {message}" for message, m in models.items()]


def _option_problems(config):
    """What vsgm's commands would refuse in their options, before any job: every number in its range and
    finite (vsgm.checks.range_problems), and the training options together (vsgm.checks.train_problems,
    the function vsgm train runs)."""
    problems = range_problems(config)
    if problems:
        return problems
    options = {
        **config["unet"],
        **config["sde"],
        **config["train"],
        "cfg": config["sample"]["cfg"],
    }
    return [f"train: {p}" for p in combination_problems(options)]


def _ood_list_problems(config):
    """An explicit list of outlier sets must not hold a model's own set (models.X.ood) or a set sharing
    its images (same registry set, overlapping classes): its AUROC would be near 0.5 and say nothing.
    """
    problems = []
    for model, entry in config["models"].items():
        if model not in config["datasets"]:
            continue
        for where, sets, own_ok in (
            (f"models.{model}.ood", entry["ood"], False),
            ("ood.sets", config["ood"]["sets"], True),
        ):
            if not isinstance(sets, list):
                continue
            bad = [
                s
                for s in sets
                if s in config["datasets"]
                and (s != model or not own_ok)
                and _shares_images(s, model)
            ]
            if bad:
                problems.append(
                    f"{where}: {bad} share(s) images with model {model} (its own set, or the same "
                    f"dataset with overlapping classes): not outliers of it"
                )
    return problems


def check_time_blind(config):
    """Refuse a UNet whose GroupNorm removes the time embedding at some width (a model partly or
    wholly blind to the noise level) unless unet_allow_time_blind is set; one line naming the
    widths and the remedies."""
    unet = config["unet"]
    blind = UNetConfig(**unet).widths_without_time()
    if blind and not config["unet_allow_time_blind"]:
        raise WorkflowError(
            f"invalid config: unet: at width(s) {blind} (model_channels {unet['model_channels']} x "
            f"channel_mult {unet['channel_mult']}) GroupNorm has one channel per group and removes "
            "the time embedding, so the models are blind to the noise level there; set "
            "unet.use_scale_shift_norm: true, or widths that do not divide 32 (e.g. model_channels "
            "48 or 64), or unet_allow_time_blind: true to keep the seed's exact network"
        )


def cli_flags(values):
    """``{name: value}`` -> ``--name value`` flags of the vsgm CLI (booleans as --name/--no-name,
    lists space-separated, None left out), sorted by name: Snakemake compares params as strings, so the
    order of keys in a config must not look like a change."""
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


# -- names and sets -----------------------------------------------------------------------------


def registry_name(key):
    """The registry dataset behind a dataset key (or a model's replicate)."""
    return config["datasets"][base_of(key)]["dataset"]


def classes_of(key):
    """The labels kept for a dataset key (None = all)."""
    return config["datasets"][key]["classes"]


def model_keys():
    """Keys of the models, in config order."""
    return list(config["models"])


def model_instances():
    """Every replicate of every model (replicate 0 under the model's key, r > 0 as KEY-rR)."""
    return instances(model_keys(), config["replicates"])


def _shares_images(a, b):
    """Whether dataset keys a and b can hold the same images (same registry set, overlapping classes)."""
    if registry_name(a) != registry_name(b):
        return False
    ca, cb = classes_of(a), classes_of(b)
    return ca is None or cb is None or bool(set(ca) & set(cb))


def ood_sets(model):
    """The out-of-distribution sets of a model or one of its replicates (dataset keys)."""
    model = base_of(model)
    sets = config["models"][model]["ood"]
    if sets is None:
        sets = config["ood"]["sets"]
    if sets == "all":
        return [
            k for k in config["datasets"] if k != model and not _shares_images(k, model)
        ]
    return [k for k in sets if k != model]


def samplers():
    """The configured sampler names."""
    return list(config["samplers"])


def _alternation(names):
    return (
        "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True)) or "(?!)"
    )


def constraints():
    """Wildcard constraints: only configured keys, so a path outside the config does not match."""
    keys = set(config["datasets"])
    return {
        "model": _alternation(model_instances()),
        "key": _alternation(keys),
        "set": _alternation(keys | set(OWN_SETS)),
        "out": _alternation(keys),
        "split": f"train|test|{TRAIN_SUBSET}",
        "sampler": _alternation(samplers()) if samplers() else "(?!)",
        "res": r"\d+|any",
        "name": _alternation(dataset_names()),
    }


# -- paths --------------------------------------------------------------------------------------


def fetch_res(key, size):
    """Which copy of a dataset a model of this size reads: medmnist ships one file per
    resolution (28/64/128/224, the nearest is used); every other set has one copy (``any``).
    """
    if get_info(registry_name(key)).source is Source.MEDMNIST:
        return str(medmnist_size(size))
    return "any"


def download_flag(key, size):
    """The flag file that says a dataset is in data_root (one per medmnist resolution)."""
    name = registry_name(key)
    return f"{config['data_root']}/{name}/.vsgm-download-{fetch_res(key, size)}"


def prepared(model, key, split):
    """A split of a dataset prepared in a model's space (shared by the model's replicates)."""
    return f"{PREPARED}/{base_of(model)}/{base_of(key)}_{split}.safetensors"


def set_split(model, set_):
    """The dataset key and split a feature set of a model is computed on."""
    if set_ == "train" and config["features"]["max_train_images"] is not None:
        return model, TRAIN_SUBSET
    if set_ in OWN_SETS:
        return base_of(model), set_
    return set_, "test"


def set_data(model, set_):
    """The prepared file a feature set of a model is computed on."""
    return prepared(model, *set_split(model, set_))


def model_file(model):
    return f"results/{model}/model.safetensors"


def classifier_file(model):
    """The feature classifier of a model: one per configured model, shared by its replicates (their
    quality numbers are then in one feature space)."""
    return f"results/{base_of(model)}/classifier.safetensors"


def samples_prefix(model, sampler):
    return f"results/{model}/samples/{sampler}"


# -- input functions and flags ------------------------------------------------------------------


def get_download_params(wildcards):
    """vsgm download flags for a dataset and resolution flag."""
    flags = {"dataset": wildcards.name, "root": config["data_root"]}
    if wildcards.res != "any":
        flags["size"] = int(wildcards.res)
    return cli_flags(flags)


def split_selection(split):
    """The CLI split and image cap of a prepared split name (train, test or the scoring subset)."""
    train_cap = config["train"]["max_images"]
    if split == "test":
        return {"split": "test", "max_images": config["features"]["max_images"]}
    if split == TRAIN_SUBSET:
        # a prefix of the same seeded permutation as the training subset, so a subset of it
        caps = [
            c
            for c in (train_cap, config["features"]["max_train_images"])
            if c is not None
        ]
        return {"split": "train", "max_images": min(caps)}
    return {"split": "train", "max_images": train_cap}


def get_prepare_input(wildcards):
    """The download flag of the set's dataset, at the model's size."""
    return download_flag(wildcards.key, config["models"][wildcards.model]["size"])


def get_prepare_params(wildcards):
    """vsgm prepare flags: the model's size and channels, the bottleneck of its training set."""
    space = config["models"][wildcards.model]
    flags = {
        "dataset": registry_name(wildcards.key),
        "root": config["data_root"],
        "size": space["size"],
        "channels": space["channels"],
        "bottleneck": native_size(registry_name(wildcards.model), space["size"]),
        "classes": classes_of(wildcards.key),
        "seed": config["seed"],
    }
    flags.update(split_selection(wildcards.split))
    return cli_flags(flags)


def imported_model(model):
    """Whether results/{model}/ holds a model imported from the seed (vsgm import-seed)."""
    meta = os.path.join("results", model, "model.json")
    if not os.path.exists(meta):
        return False
    with open(meta) as f:
        return "imported_from" in yaml.safe_load(f)


def get_train_input(wildcards):
    """The prepared training split; none for an imported model, which is then never retrained
    (its outputs exist and no input is newer)."""
    if imported_model(wildcards.model):
        return []
    return prepared(wildcards.model, wildcards.model, "train")


def get_train_params(wildcards):
    """vsgm train flags: the UNet, SDE and training options under the seed's names."""
    train = dict(config["train"])
    # replicate r trains with seed + r (replicate 0: the configured seed)
    flags = {
        "dataset": registry_name(wildcards.model),
        "seed": config["seed"] + replicate_of(wildcards.model),
    }
    flags.update(config["unet"])
    flags.update(config["sde"])
    flags.update({k: v for k, v in train.items() if k != "max_images"})
    flags["log_with"] = config["tracking"]  # "none" unless the config names a tracker
    # the progress grids take vsgm train's own sampling defaults: a sample: setting must not retrain
    return cli_flags(flags)


def get_launch_params(wildcards, resources, threads):
    """accelerate launch flags: one process per GPU of the job (resource ``gpu``), else one CPU process."""
    gpus = int(resources.gpu)
    flags = {
        "num_machines": 1,
        "mixed_precision": config["train"]["mixed_precision"],
        "dynamo_backend": "no",
        "num_cpu_threads_per_process": threads,
    }
    if gpus > 0:
        flags["num_processes"] = gpus
        # port 0: accelerate picks a free port when the job starts, so two multi-GPU jobs on one node
        # do not both take the default 29500
        multi = " --multi_gpu --main_process_port 0" if gpus > 1 else ""
        return f"{cli_flags(flags)}{multi}"
    flags["num_processes"] = 1
    return f"--cpu {cli_flags(flags)}"


def get_gpu_slots(wildcards, resources):
    """Command prefix that gives a GPU job GPUs of its own on a local multi-GPU machine (vsgm.gpu_slots;
    under SLURM it leaves the scheduler's choice alone); empty for CPU jobs."""
    gpus = int(resources.gpu)
    return f"python -m vsgm.gpu_slots --gpus {gpus} --" if gpus > 0 else ""


def get_device(wildcards, resources):
    """--device of the inference commands: cuda when the job holds a GPU."""
    return "cuda" if int(resources.gpu) > 0 else "cpu"


def get_sample_params(wildcards):
    """vsgm sample flags (the same for every sampler)."""
    s = config["sample"]
    flags = {
        k: s[k]
        for k in (
            "num_samples",
            "num_steps",
            "atol",
            "rtol",
            "snr",
            "cfg",
            "batch_size",
            "denoise",
        )
    }
    flags["seed"] = config["seed"]
    return cli_flags(flags)


# -- memory -------------------------------------------------------------------------------------
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


def _split_images(key, split, capped=True):
    """At most how many images a prepared split of a dataset key holds (None: not known)."""
    count = get_info(registry_name(key)).split_images(
        "train" if split == TRAIN_SUBSET else split
    )
    cap = split_selection(split)["max_images"] if capped else None
    known = [n for n in (count, cap) if n is not None]
    return min(known) if known else None


def _pixels(model):
    """Bytes of one uint8 image in a model's space."""
    space = config["models"][base_of(model)]
    return space["channels"] * space["size"] ** 2


def _split_bytes(model, key, split, per_pixel=1):
    """Bytes of a prepared split held in memory (uint8, or per_pixel bytes per pixel); 0 when unknown."""
    return (_split_images(key, split) or 0) * _pixels(model) * per_pixel


def prepare_bytes(wildcards):
    """vsgm prepare: the raw split (the library's arrays and the images picked from them, or the
    folder's listing and the decoded images) and the converted images, held together."""
    name, space = registry_name(wildcards.key), config["models"][wildcards.model]
    info = get_info(name)
    total = _split_images(wildcards.key, wildcards.split, capped=False) or 0
    kept = _split_images(wildcards.key, wildcards.split) or 0
    bottleneck = native_size(registry_name(wildcards.model), space["size"])
    load = space["size"] if bottleneck is None else min(space["size"], bottleneck)
    if any(f.endswith("/") for f in info.files()):
        # image folders: listed whole, the kept images decoded to RGB at load
        raw = total * LISTING_BYTES + kept * 3 * load**2
    else:
        # arrays: the whole split at its stored size (generated sets: at load) and a contiguous
        # copy (CIFAR, SVHN), then the kept images picked from it
        side = native_size(name, load) or load
        raw = (2 * total + kept) * info.channels * side**2
    return raw + _split_bytes(wildcards.model, wildcards.key, wildcards.split)


def train_split_bytes(wildcards):
    """vsgm train and vsgm classifier: the training split, uint8 (training: in each process, one per
    GPU of the job; the classifier converts it to float a batch at a time)."""
    return _split_bytes(wildcards.model, wildcards.model, "train")


def quality_bytes(wildcards):
    """vsgm quality: the test split as float32 (loaded as uint8 first) and the training split as uint8
    (only the few images it compares are converted)."""
    return _split_bytes(
        wildcards.model, wildcards.model, "test", FLOAT_COPY
    ) + _split_bytes(wildcards.model, wildcards.model, "train")


def sweep_bytes(wildcards):
    """vsgm sweep: the test split as float32 (loaded as uint8 first)."""
    return _split_bytes(wildcards.model, wildcards.model, "test", FLOAT_COPY)


def features_bytes(wildcards):
    """vsgm features: the set's prepared split, uint8."""
    return _split_bytes(wildcards.model, *set_split(wildcards.model, wildcards.set))


def mem_mb_for(held, floor, runtime_mb=RUNTIME_MB):
    """A mem_mb function of the wildcards: runtime_mb plus the bytes held(wildcards), at least floor."""

    def estimate(wildcards):
        return max(floor, runtime_mb + math.ceil(held(wildcards) / MB))

    return estimate


def get_classifier_input(wildcards):
    return prepared(wildcards.model, wildcards.model, "train")


def get_quality_input(wildcards):
    prefix = samples_prefix(wildcards.model, wildcards.sampler)
    return {
        "classifier": classifier_file(wildcards.model),
        "samples": f"{prefix}.npz",
        "cost": f"{prefix}.json",
        "reference": prepared(wildcards.model, wildcards.model, "test"),
        "train_reference": prepared(wildcards.model, wildcards.model, "train"),
    }


def get_paired_input(wildcards):
    m = wildcards.model
    return {
        "classifier": classifier_file(m),
        "samples": [f"{samples_prefix(m, s)}.npz" for s in samplers()],
        "reference": prepared(m, m, "test"),
        "train_reference": prepared(m, m, "train"),
    }


def get_features_input(wildcards):
    return {
        "checkpoint": model_file(wildcards.model),
        "data": set_data(wildcards.model, wildcards.set),
    }


def get_features_params(wildcards):
    f = config["features"]
    flags = {k: f[k] for k in ("n_draws", "levels", "bpd", "bpd_steps", "batch_size")}
    flags["seed"] = config["seed"]
    return cli_flags(flags)


def get_score_input(wildcards):
    base = f"results/{wildcards.model}/features"
    return {
        "train": f"{base}/train.parquet",
        "features": f"{base}/{wildcards.set}.parquet",
    }


def get_score_params(wildcards):
    """--holdout for the model's own training images: score only the part the scorers were not
    fitted on (the sanity row)."""
    holdout = " --holdout" if wildcards.set == "train" else ""
    return f"--seed {config['seed']}{holdout}"


def get_pair_input(wildcards):
    base = f"results/{wildcards.model}"
    return {
        "in_scores": f"{base}/scores/test.parquet",
        "out_scores": f"{base}/scores/{wildcards.out}.parquet",
        "sanity": f"{base}/scores/train.parquet",
        "nfe": f"{base}/features/test.json",
    }


# -- targets ------------------------------------------------------------------------------------


def ood_tables():
    return [f"results/{m}/ood_{o}.csv" for m in model_instances() for o in ood_sets(m)]


def sample_files(ext):
    return [
        f"{samples_prefix(m, s)}.{ext}" for m in model_instances() for s in samplers()
    ]


def quality_files():
    if not config["sample"]["quality"]:
        return []
    return [
        f"results/{m}/quality/{s}.json" for m in model_instances() for s in samplers()
    ]


def paired_files():
    """One paired comparison of all samplers per model (with sample.quality)."""
    if not config["sample"]["quality"]:
        return []
    return [f"results/{m}/quality/paired.csv" for m in model_instances()]


def sweep_files():
    if not config["sweep"]["enabled"]:
        return []
    return [f"results/{m}/solver_sweep.csv" for m in model_instances()]


def get_sweep_input(wildcards):
    return {
        "checkpoint": model_file(wildcards.model),
        "classifier": classifier_file(wildcards.model),
        "reference": prepared(wildcards.model, wildcards.model, "test"),
    }


def get_sweep_params(wildcards):
    s = config["sweep"]
    flags = {k: s[k] for k in ("steps", "tolerances", "num_samples", "batch_size")}
    flags["samplers"] = s["samplers"] if s["samplers"] is not None else samplers()
    flags["seed"] = config["seed"]
    flags["denoise"] = config["sample"]["denoise"]
    return cli_flags(flags)


def get_aggregate_input(wildcards):
    return {
        "ood": ood_tables(),
        "samples": sample_files("json"),
        "grids": sample_files("png"),
        "quality": quality_files(),
        "paired": paired_files(),
        "sweeps": sweep_files(),
        "histories": [f"results/{m}/train.csv" for m in model_instances()],
    }


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


def aggregate_files():
    """The aggregate files: name -> path (with the solver sweep's when it is enabled)."""
    files = dict(AGGREGATES)
    if config["sweep"]["enabled"]:
        files.update(SWEEP_AGGREGATES)
    return files


def aggregate_outputs():
    """The aggregate files annotated for the report, as outputs of report_aggregate (only
    there: the caption paths are relative to workflow/rules/)."""
    captions = {
        "auroc": ("auroc.rst", "AUROC (long form)"),
        "auroc_png": ("auroc_png.rst", "AUROC heatmap"),
        "solvers": ("solvers.rst", "samplers"),
        "samples": ("samples_montage.rst", "sample grids"),
        "efficiency": ("solver_efficiency.rst", "solver efficiency"),
        "sweep_png": ("solver_sweep.rst", "quality against NFE"),
        "loss": ("loss.rst", "training loss"),
    }
    outputs = {}
    for name, path in aggregate_files().items():
        if name in captions:
            caption, label = captions[name]
            path = report(
                path,
                caption=f"../report/{caption}",
                category="Summary",
                labels={"table": label},
            )
        outputs[name] = path
    return outputs


def all_targets():
    """Everything the default target builds."""
    return [*aggregate_files().values(), *ood_tables(), *sample_files("png")]


use_command_line_config(config)
check_config(config)
check_time_blind(config)


wildcard_constraints:
    **constraints(),
