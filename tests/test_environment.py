"""environment.yml (conda users) and pyproject.toml must name the same packages."""

from __future__ import annotations

import re

import tomllib
import yaml

from tools.book import ROOT

CONDA_TO_PYPI = {"pytorch": "torch"}


def _name(req: str) -> str:
    return re.split(r"[<>=!~;\[ @]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = project["optional-dependencies"]
    wanted = {_name(r) for r in project["dependencies"]}
    todo, seen = ["book", "test"], set()
    while todo:  # "mslib[data,viz]" pulls in those extras too
        extra = todo.pop()
        seen.add(extra)
        for req in extras[extra]:
            m = re.match(r"mslib\[([^\]]+)\]", req.replace(" ", ""))
            if m:
                todo += [e for e in m.group(1).split(",") if e not in seen]
            else:
                wanted.add(_name(req))
    env = yaml.safe_load((ROOT / "environment.yml").read_text(encoding="utf-8"))
    names, pip_lines = set(), []
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            pip_lines += dep.get("pip", [])
        else:
            names.add(CONDA_TO_PYPI.get(_name(dep), _name(dep)))
    names |= {_name(p) for p in pip_lines if not p.startswith("-")}
    names -= {"python", "pip"}
    assert any(p.replace(" ", "").startswith("-e.[book,test]") or "-e .[book,test]" in p for p in pip_lines), (
        "environment.yml must install the project itself with pip: -e .[book,test]"
    )
    assert names == wanted, (
        f"only in environment.yml: {sorted(names - wanted)}; only in pyproject: {sorted(wanted - names)}"
    )


def test_torch_unpinned_above():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    torch = [r for r in project["dependencies"] if _name(r) == "torch"]
    assert torch and "<" not in torch[0] and ">=2.4" in torch[0].replace(" ", "")
