"""Every module states its public names in `__all__`, and every name there exists."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

PACKAGES = ("app", "rankers", "index")


def modules() -> list[str]:
    names = []
    for package in PACKAGES:
        root = importlib.import_module(package)
        for info in pkgutil.walk_packages(root.__path__, prefix=f"{package}."):
            if not info.ispkg and not info.name.rsplit(".", 1)[1].startswith("_"):
                names.append(info.name)
    return sorted(names)


@pytest.mark.parametrize("name", modules())
def test_all_lists_names_that_exist(name: str) -> None:
    module = importlib.import_module(name)
    public = getattr(module, "__all__", None)
    assert public is not None, f"{name} has no __all__"
    assert len(set(public)) == len(public), f"{name}.__all__ repeats a name"
    missing = [n for n in public if not hasattr(module, n)]
    assert missing == [], f"{name}.__all__ names what it does not define: {missing}"
