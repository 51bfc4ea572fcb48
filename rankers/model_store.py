"""Where the enhanced phase's installed ranking model lives: ``ROOT/models/``.

    ROOT/models/enhanced-<digest>.json   a linear model (or .txt: a LightGBM model)
    ROOT/models/CURRENT                  the file name of the installed one

Each model file is named by the digest of its text, so a name is a version and never changes
meaning. Files and the pointer are written to a temporary name, fsynced and moved into place
with `os.replace`, as the snapshot's ``CURRENT`` is: a reader sees the old model or the new
one, whole. No pointer means the default weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from index.core.atomic import write_atomic
from index.core.errors import ModelError
from rankers.learned import RankModel, digest, model_from_text

__all__ = ["MODELS", "POINTER", "InstalledModel", "install_model", "load_model", "pointer_mtime"]

MODELS = "models"
POINTER = "CURRENT"


@dataclass(frozen=True)
class InstalledModel:
    model: RankModel
    version: str
    """The model file's name without its suffix: ``enhanced-<digest>``."""


def install_model(root: Path, model: RankModel) -> str:
    """Write `model` under ``root/models`` and make it the installed one; its version."""
    folder = Path(root) / MODELS
    folder.mkdir(exist_ok=True)
    text = model.to_text()
    version = f"enhanced-{digest(text)}"
    name = version + model.suffix
    write_atomic(folder / name, text)
    write_atomic(folder / POINTER, name + "\n")
    return version


def pointer_mtime(root: Path) -> int | None:
    """When the pointer last changed (ns), None without one: cheap enough to check often."""
    try:
        return (Path(root) / MODELS / POINTER).stat().st_mtime_ns
    except FileNotFoundError:
        return None


def load_model(root: Path) -> InstalledModel | None:
    """The installed model of an index root, None when there is none (the default)."""
    folder = Path(root) / MODELS
    try:
        name = (folder / POINTER).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    path = folder / name
    if "/" in name or not name.startswith("enhanced-") or path.suffix not in (".json", ".txt"):
        raise ModelError(f"{folder / POINTER}: names {name!r}, not an enhanced-*.json/.txt model")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ModelError(f"{folder / POINTER} names {name}, which is missing") from None
    try:
        model = model_from_text(text, path.suffix)
    except ModelError as exc:
        raise ModelError(f"{path}: {exc}") from None
    return InstalledModel(model, path.stem)
