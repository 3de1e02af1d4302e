"""Datasets for vsgm: registry, sources, downloads, the pairing rule, prepared caches, batches.

Public API (imported lazily, so ``import vsgm.data`` and the CLI stay fast):

* registry: :data:`REGISTRY`, :class:`DatasetInfo`, :class:`Source`, :func:`get_info`,
  :func:`dataset_names`, :func:`native_size`, :func:`medmnist_size`, :func:`data_dir`,
  :data:`SEED_DATASETS`, :data:`EMBEDDED_DATASETS`, :data:`SPLITS`
* errors: :class:`DatasetUnavailableError`, :class:`CorruptFileError`
* :func:`download`, :func:`load_split`
* pairing: :func:`to_model_space`
* caches: :func:`prepare`, :func:`load_prepared`, :class:`PreparedData`, :data:`FORMAT_VERSION`
* batches: :class:`ImageLoader`, :func:`loader_throughput`
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "REGISTRY": "registry",
    "DatasetInfo": "registry",
    "Source": "registry",
    "get_info": "registry",
    "dataset_names": "registry",
    "native_size": "registry",
    "medmnist_size": "registry",
    "data_dir": "registry",
    "SEED_DATASETS": "registry",
    "EMBEDDED_DATASETS": "registry",
    "SPLITS": "registry",
    "DatasetUnavailableError": "errors",
    "CorruptFileError": "errors",
    "download": "fetch",
    "load_split": "sources",
    "to_model_space": "pairing",
    "prepare": "cache",
    "load_prepared": "cache",
    "PreparedData": "cache",
    "FORMAT_VERSION": "cache",
    "ImageLoader": "loader",
    "loader_throughput": "loader",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'vsgm.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
