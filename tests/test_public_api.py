"""The public surface of mslib (issue 12): re-exports with __all__, the version, py.typed, light imports."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest
import torch

import mslib

ROOT = Path(__file__).resolve().parents[1]
SUBPACKAGES = ["mslib.blocks", "mslib.losses", "mslib.models", "mslib.data", "mslib.train", "mslib.recipes"]
MODULES = ["mslib", "mslib.metrics", "mslib.utils", "mslib.weights", "mslib.clustering", "mslib.configs"]
#: modules that only re-export another module under an older path
ALIASES = {"mslib.models.pretrained"}


def _public_modules(package: str) -> list[str]:
    pkg = importlib.import_module(package)
    return [f"{package}.{m.name}" for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith("_")]


@pytest.mark.parametrize("name", SUBPACKAGES + MODULES)
def test_every_name_in_all_imports(name):
    mod = importlib.import_module(name)
    assert isinstance(mod.__all__, (list, tuple)) and mod.__all__, f"{name} has no __all__"
    assert len(set(mod.__all__)) == len(mod.__all__), f"{name}.__all__ has duplicates"
    missing = [n for n in mod.__all__ if not hasattr(mod, n)]
    assert not missing, f"{name}.__all__ names missing attributes: {missing}"
    ns: dict = {}
    exec(f"from {name} import *", ns)  # noqa: S102 - the star import a user would write
    assert set(mod.__all__) <= set(ns)


@pytest.mark.parametrize("package", ["mslib.blocks", "mslib.losses", "mslib.models", "mslib.data"])
def test_subpackage_reexports_every_public_module(package):
    """Each public module's __all__ is re-exported by its subpackage (or the module itself is, as a namespace)."""
    pkg = importlib.import_module(package)
    for modname in _public_modules(package):
        if modname in ALIASES:
            continue
        mod = importlib.import_module(modname)
        short = modname.rsplit(".", 1)[1]
        if short in pkg.__all__:
            continue
        names = getattr(mod, "__all__", None)
        assert names is not None, f"{modname} has no __all__: list its public names"
        missing = [n for n in names if n not in pkg.__all__ or getattr(pkg, n) is not getattr(mod, n)]
        assert not missing, (
            f"{package}/__init__.py does not re-export {missing} of {modname}: add them to its imports and __all__"
        )


def test_version_comes_from_the_package_metadata():
    import re

    declared = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(encoding="utf-8"), re.M)
    assert mslib.__version__ == version("mslib") == declared.group(1)
    assert f'"{declared.group(1)}"' not in (ROOT / "mslib" / "__init__.py").read_text(encoding="utf-8")  # one copy


def test_optional_dependencies_are_extras():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    core = " ".join(project["dependencies"])
    for name in ("h5py", "nibabel", "matplotlib", "ipywidgets"):
        assert name not in core, f"{name} is a core dependency; it belongs to an extra"
    extras = project["optional-dependencies"]
    assert {"h5py", "nibabel"} <= {d.split(">")[0].split("=")[0] for d in extras["data"]}
    assert "matplotlib" in " ".join(extras["viz"])
    for pulls in ("book", "test"):
        assert "mslib[data,viz]" in extras[pulls], f"[{pulls}] must pull in the data and viz extras"


def test_py_typed_ships():
    assert (Path(mslib.__file__).parent / "py.typed").is_file()
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert 'mslib = ["py.typed"]' in text


@pytest.mark.parametrize(
    "imports, absent",
    [
        # `pip install mslib` without extras must be enough to import blocks, losses, metrics and models
        ("mslib.blocks, mslib.losses, mslib.models, mslib.metrics", ("h5py", "nibabel", "matplotlib", "ipywidgets")),
        # the per-image MS-Former loop imports only what it uses: the lazy subpackages (PEP 562) keep torchvision
        # (supervised models and recipes) and scipy (metrics, k-means) out, ~200 MB of peak memory
        ("mslib.recipes.msformer, mslib.train.selfsup", ("torchvision", "scipy", "mslib.data", "mslib.models.m2snet")),
    ],
)
def test_imports_load_no_unneeded_dependency(imports, absent):
    code = f"import sys, {imports}; print(sorted(m for m in {absent!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_vgg16_url_is_torchvisions():
    from torchvision.models import VGG16_Weights

    from mslib.weights import VGG16_URL, WEIGHTS

    assert VGG16_URL == VGG16_Weights.IMAGENET1K_V1.url == WEIGHTS["vgg16"].url


def test_optional_import_names_the_extra():
    from mslib.utils import optional_import

    assert optional_import("math", "data", "x") is __import__("math")
    with pytest.raises(ImportError, match=r"pip install 'mslib\[data\]'"):
        optional_import("surely_not_a_module_mslib", "data", "reading NIfTI volumes")


def test_image_to_tensor_is_the_one_conversion():
    from mslib.utils import image_to_tensor

    u8 = np.array([[[0, 255, 51]]], dtype=np.uint8)  # (H, W, C) = (1, 1, 3)
    x = image_to_tensor(u8)
    assert x.shape == (3, 1, 1) and x.dtype == torch.float32
    torch.testing.assert_close(x.flatten(), torch.tensor([0.0, 1.0, 0.2]))
    assert image_to_tensor(np.zeros((4, 5), np.float32)).shape == (1, 4, 5)  # grey, float kept
    t = torch.rand(3, 4, 5)
    assert torch.equal(image_to_tensor(t), t)
    with pytest.raises(ValueError, match=r"\(H, W\) or \(H, W, C\)"):
        image_to_tensor(np.zeros((1, 2, 3, 4)))


def test_readme_block_snippet_runs():
    """The five lines the README shows: one mslib block inside your own model."""
    from torch import nn

    from mslib.blocks import MultiScaleSubtractionUnit

    class TinyNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc1, self.enc2 = nn.Conv2d(3, 32, 3, padding=1), nn.Conv2d(32, 32, 3, stride=2, padding=1)
            self.msu = MultiScaleSubtractionUnit(32)  # M2SNet Eq. 2
            self.head = nn.Conv2d(32, 1, 1)

        def forward(self, x):
            f1 = self.enc1(x).relu()
            f2 = self.enc2(f1).relu()
            return self.head(self.msu(f2, f1))

    assert TinyNet()(torch.rand(2, 3, 32, 32)).shape == (2, 1, 32, 32)
