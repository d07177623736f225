"""Text models of a rule pack: read each manifest and its weights, validate them, build the model.

pack.yaml names each model's manifest (`models: {offensive_zh: models/offensive_zh.yaml}`); the
manifest (schema.ModelManifest) names its weights file, relative to the manifest. Both files are
read through the loader, so they count in the pack digest and stay confined to the pack, and a
reload reads them again. Every problem is a located pack issue: a manifest field that is wrong
is reported at its line, weights of the wrong size at the manifest's `bits` line.
"""

from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, Protocol

import msgspec
import numpy as np
import numpy.typing as npt

from service.engine.textmodel import NgramModel
from service.errors import PackIssue
from service.rules import schema as s
from service.rules.tables import (
    MODEL_EMOJI_WORD_MIN_COUNT,
    hanzi_syllables,
    model_emoji_names,
    model_emoji_readings,
    model_emoji_words,
    model_pinyin_words,
    model_spellings,
    model_split_pairs,
    model_view_table,
)

FORMAT_VERSION: Final = 1  # what this Redline reads; `redline train` writes it
MODEL_MAX_BYTES: Final = 50 * 1024 * 1024  # per weights file (2^24 float16 values is 32 MiB)

Locate = Callable[[str, str], PackIssue]


class Manifest(Protocol):
    """A parsed YAML file and where its JSON paths are (the loader's document)."""

    data: Any

    def locate(self, path: str, message: str) -> PackIssue: ...


ReadYaml = Callable[[str], Manifest | None]
Confine = Callable[[str, PackIssue], Path | None]
ReadBytes = Callable[[Path, str, int], bytes | None]


def load_models(
    pack: s.PackFile,
    read_yaml: ReadYaml,
    confine: Confine,
    read_bytes: ReadBytes,
    locate_in_pack: Locate,
    issues: list[PackIssue],
) -> dict[str, NgramModel]:
    """Every model the pack declares, by name; problems go to `issues`."""
    models: dict[str, NgramModel] = {}
    for name, relative in sorted(pack.models.items()):
        where = locate_in_pack(f"$.models.{name}", "")
        path = confine(relative, where)
        if path is None:
            continue
        if not path.is_file():
            issues.append(PackIssue(where.file, where.line, f"model manifest {relative!r} not found"))
            continue
        document = read_yaml(relative)
        if document is None:
            continue
        model = _model(name, relative, document, confine, read_bytes, issues)
        if model is not None:
            models[name] = model
    return models


def _model(
    name: str, relative: str, document: Manifest, confine: Confine, read_bytes: ReadBytes, issues: list[PackIssue]
) -> NgramModel | None:
    try:
        manifest = msgspec.convert(document.data, s.ModelManifest)
    except msgspec.ValidationError as exc:
        message, _, where = str(exc).rpartition(" - at `")
        path = where.rstrip("`") if message else "$"
        issues.append(document.locate(path, f"{path.removeprefix('$.') or 'manifest'}: {message or exc}"))
        return None
    if manifest.version != FORMAT_VERSION:
        issues.append(document.locate("$.version", f"model format version {manifest.version} is not supported "
                                                    f"(this Redline reads version {FORMAT_VERSION})"))
        return None
    if manifest.name != name:
        issues.append(document.locate("$.name", f"model is named {manifest.name!r} but pack.yaml declares it "
                                                 f"as {name!r}"))
        return None
    weights_file = posixpath.normpath(posixpath.join(posixpath.dirname(relative), manifest.weights))
    weights_path = confine(weights_file, document.locate("$.weights", ""))
    if weights_path is None:
        return None
    if not weights_path.is_file():
        issues.append(document.locate("$.weights", f"weights file {weights_file!r} not found"))
        return None
    data = read_bytes(weights_path, weights_file, MODEL_MAX_BYTES)
    if data is None:
        return None
    expected = 1 << manifest.bits
    if len(data) != 2 * expected:
        issues.append(document.locate("$.bits", f"weights file {weights_file!r} holds {len(data) / 2:g} float16 "
                                                f"values; bits {manifest.bits} needs {expected}"))
        return None
    if hashlib.sha256(data).hexdigest() != manifest.weights_sha256:
        issues.append(document.locate("$.weights_sha256", f"weights file {weights_file!r} does not match "
                                                          "weights_sha256 (a partial copy, or another model's)"))
        return None
    values = np.frombuffer(data, dtype="<f2").astype(np.float32)
    if not np.isfinite(values).all() or not np.isfinite(manifest.bias):
        issues.append(document.locate("$.weights", f"weights file {weights_file!r} holds values that are not finite"))
        return None
    return text_model(name, tuple(manifest.views), manifest.max_order, manifest.bits, values, float(manifest.bias))


def text_model(
    name: str, views: tuple[str, ...], max_order: int, bits: int, weights: npt.NDArray[np.float32], bias: float,
    *, emoji_word_min_count: int = MODEL_EMOJI_WORD_MIN_COUNT,
) -> NgramModel:
    """A model over the named views (`tables.MODEL_VIEWS`) with the readings every Redline model
    has (emoji by their names, in context too; pinyin as hanzi; a character split into its parts
    as itself): what a pack loads, `redline train` writes and the quality tools score with.
    `emoji_word_min_count` 0: no reading in context."""
    return NgramModel(
        name, tuple(model_view_table(view) for view in views), max_order, bits, weights, bias,
        model_emoji_readings(), model_spellings(), model_pinyin_words(), hanzi_syllables(),
        emoji_names=model_emoji_names() if emoji_word_min_count else {},
        emoji_words=model_emoji_words(views[0], emoji_word_min_count),
        split_pairs=model_split_pairs(),
    )
