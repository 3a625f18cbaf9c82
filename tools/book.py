"""Book tooling: list chapters from _toc.yml, execute them, build the HTML book.

    python tools/book.py list                    # chapters in reading order
    python tools/book.py execute [--in-place]    # run every chapter with the quick profile (papermill)
    python tools/book.py build [--execute]       # jupyter-book build; --execute re-runs the chapters first

`make notebooks` is `execute --in-place` (refreshes the stored outputs, strips widget
state); `make book` is `build --execute`.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def toc_files(root: Path = ROOT) -> list[str]:
    """Every file named in _toc.yml (without extension), root first, in reading order."""
    toc = yaml.safe_load((root / "_toc.yml").read_text(encoding="utf-8"))
    out = [toc["root"]]

    def walk(entries):
        for e in entries or []:
            if "file" in e:
                out.append(e["file"])
            walk(e.get("sections"))

    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    walk(toc.get("chapters"))
    return out


def chapters(root: Path = ROOT) -> list[Path]:
    """The notebooks (.ipynb) listed in _toc.yml, in reading order."""
    return [root / f"{f}.ipynb" for f in toc_files(root) if (root / f"{f}.ipynb").exists()]


def strip_widget_state(nb: dict) -> dict:
    """Drop ipywidgets state and widget-view outputs (static HTML would show 'HBox(...)')."""
    nb.get("metadata", {}).pop("widgets", None)
    for cell in nb.get("cells", []):
        outs = [o for o in cell.get("outputs", []) or []
                if "application/vnd.jupyter.widget-view+json" not in o.get("data", {})]
        if cell.get("cell_type") == "code":
            cell["outputs"] = outs
    return nb


def execute(nb_path: Path, out_path: Path, parameters: dict | None = None, timeout: int = 900) -> float:
    """Execute one chapter with papermill (quick profile unless overridden); return seconds."""
    import papermill as pm

    params = {"PROFILE": "quick"}
    params.update(parameters or {})
    t0 = time.perf_counter()
    pm.execute_notebook(
        str(nb_path), str(out_path), parameters=params, kernel_name="python3", cwd=str(nb_path.parent),
        progress_bar=False, execution_timeout=timeout, log_output=False,
    )
    return time.perf_counter() - t0


def _clean_for_storage(path: Path) -> None:
    nb = json.loads(path.read_text(encoding="utf-8"))
    strip_widget_state(nb)
    meta = nb.get("metadata", {}).get("papermill", {})
    for key in ("start_time", "end_time", "duration", "input_path", "output_path"):
        meta.pop(key, None)
    for cell in nb.get("cells", []):
        cell.get("metadata", {}).pop("papermill", None)
        cell.get("metadata", {}).pop("execution", None)
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def cmd_execute(args) -> int:
    todo = chapters()
    if args.only:
        todo = [c for c in todo if any(s in c.name for s in args.only)]
    rows = []
    for nb in todo:
        if args.in_place:
            fd, tmp = tempfile.mkstemp(suffix=".ipynb", dir=nb.parent)
            os.close(fd)
            try:
                secs = execute(nb, Path(tmp))
                _clean_for_storage(Path(tmp))
                os.chmod(tmp, 0o644)
                os.replace(tmp, nb)
            finally:
                if os.path.exists(tmp):
                    os.remove(tmp)
        else:
            out = ROOT / "_build" / "executed" / nb.relative_to(ROOT)
            out.parent.mkdir(parents=True, exist_ok=True)
            secs = execute(nb, out)
        rows.append((nb.relative_to(ROOT).as_posix(), secs))
        print(f"{nb.relative_to(ROOT)}: {secs:.1f} s", flush=True)
    print("\n| chapter | quick-run time (s) |\n|---|---|")
    for name, secs in rows:
        print(f"| {name} | {secs:.1f} |")
    return 0


def cmd_build(args) -> int:
    config = ROOT / "_config.yml"
    if args.execute:
        cfg = yaml.safe_load(config.read_text(encoding="utf-8"))
        cfg["execute"]["execute_notebooks"] = "force"
        (ROOT / "_build").mkdir(exist_ok=True)
        config = ROOT / "_build" / "_config_execute.yml"
        config.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    jb = shutil.which("jupyter-book", path=str(Path(sys.executable).parent)) or "jupyter-book"
    cmd = [jb, "build", str(ROOT), "--config", str(config), "--path-output", str(ROOT)]
    if args.strict:
        cmd += ["-W", "-n", "--keep-going"]
    print("+", " ".join(cmd), flush=True)
    rc = subprocess.call(cmd, cwd=ROOT)
    if rc == 0:
        print(f"\nThe book is built: open {ROOT / '_build' / 'html' / 'index.html'}")
    return rc


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list")
    e = sub.add_parser("execute")
    e.add_argument("--in-place", action="store_true", help="overwrite the stored notebooks with fresh outputs")
    e.add_argument("--only", nargs="*", help="substrings of chapter file names to run")
    b = sub.add_parser("build")
    b.add_argument("--execute", action="store_true", help="execute every chapter (quick profile) while building")
    b.add_argument("--strict", action="store_true", help="-W -n --keep-going")
    args = p.parse_args(argv)
    if args.cmd == "list":
        for c in chapters():
            print(c.relative_to(ROOT))
        return 0
    return cmd_execute(args) if args.cmd == "execute" else cmd_build(args)


if __name__ == "__main__":
    sys.exit(main())
