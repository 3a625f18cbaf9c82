"""Book tooling: list chapters from _toc.yml, execute them, build the HTML book.

    python tools/book.py list                    # chapters in reading order
    python tools/book.py execute [--in-place]    # run every chapter with the quick profile (papermill)
    python tools/book.py build [--execute]       # jupyter-book build; --execute re-runs the chapters first
    python tools/book.py set-repo URL [--branch B]   # the repository address, stamped everywhere
    python tools/book.py pdf                     # one PDF per page from the built HTML (print stylesheet)

`make notebooks` is `execute --in-place` (refreshes the stored outputs, strips widget
state and papermill's injected parameters cell); `make book` is `build --execute`.

This module is also the book's Sphinx extension (``sphinx: local_extensions`` in
_config.yml): it serves MathJax from the build itself (no CDN), adds the book's CSS and
JavaScript (book/_static) and hides test plumbing (``# NBVAL_CHECK_OUTPUT`` markers,
papermill's injected parameters cell) from the rendered pages.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
STATIC = ROOT / "book" / "_static"
# Kernels started by the book's executions inherit these: no progress bars and no live
# widgets in a page nobody can interact with (mslib.viz.interactive draws its static version),
# and no MPLBACKEND, so that the kernel's inline backend puts every figure into the page
# (MPLBACKEND=Agg made `plt.show()` silently draw nothing).
EXECUTION_ENV = {"TQDM_DISABLE": "1", "MSLIB_STATIC_WIDGETS": "1", "MPLBACKEND": None}
NBVAL_MARKER = re.compile(r"^[ \t]*#[ \t]*NBVAL_[A-Z_]+[ \t]*(\n|$)", re.M)
COLAB = "https://colab.research.google.com"


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
        outs = [
            o
            for o in cell.get("outputs", []) or []
            if "application/vnd.jupyter.widget-view+json" not in o.get("data", {})
        ]
        if cell.get("cell_type") == "code":
            cell["outputs"] = outs
    return nb


def execute(nb_path: Path, out_path: Path, parameters: dict | None = None, timeout: int = 900) -> float:
    """Execute one chapter with papermill (quick profile unless overridden); return seconds."""
    import papermill as pm

    params = {"PROFILE": "quick"}
    params.update(parameters or {})
    t0 = time.perf_counter()
    with _environment(EXECUTION_ENV):
        pm.execute_notebook(
            str(nb_path),
            str(out_path),
            parameters=params,
            kernel_name="python3",
            cwd=str(nb_path.parent),
            progress_bar=False,
            execution_timeout=timeout,
            log_output=False,
        )
    return time.perf_counter() - t0


class _environment:
    """Set environment variables for the duration of a ``with`` block (kernels inherit them)."""

    def __init__(self, values: dict):
        self.values, self.saved = values, {}

    def __enter__(self):
        for k, v in self.values.items():
            self.saved[k] = os.environ.get(k)
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

    def __exit__(self, *exc):
        for k, v in self.saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def strip_injected_parameters(nb: dict) -> dict:
    """Drop papermill's ``injected-parameters`` cell: it repeats the parameters cell (the values
    used stay in ``metadata.papermill.parameters``), and readers would see it twice."""
    nb["cells"] = [c for c in nb.get("cells", []) if "injected-parameters" not in c.get("metadata", {}).get("tags", [])]
    return nb


def _clean_for_storage(path: Path) -> None:
    nb = json.loads(path.read_text(encoding="utf-8"))
    strip_widget_state(nb)
    strip_injected_parameters(nb)
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
    env = {k: v for k, v in dict(os.environ, **EXECUTION_ENV).items() if v is not None}
    if args.execute:
        cfg = yaml.safe_load(config.read_text(encoding="utf-8"))
        cfg["execute"]["execute_notebooks"] = "force"
        # this copy lives in _build/: Jupyter Book resolves local_extensions from the config's folder
        local = cfg.get("sphinx", {}).get("local_extensions") or {}
        for name, path in local.items():
            local[name] = str((ROOT / path).resolve())
        (ROOT / "_build").mkdir(exist_ok=True)
        config = ROOT / "_build" / "_config_execute.yml"
        config.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    jb = shutil.which("jupyter-book", path=str(Path(sys.executable).parent)) or "jupyter-book"
    cmd = [jb, "build", str(ROOT), "--config", str(config), "--path-output", str(ROOT)]
    if args.strict:
        cmd += ["-W", "-n", "--keep-going"]
    print("+", " ".join(cmd), flush=True)
    rc = subprocess.call(cmd, cwd=ROOT, env=env)
    if rc == 0:
        print(f"\nThe book is built: open {ROOT / '_build' / 'html' / 'index.html'}")
    return rc


# --- the repository address: one source of truth (_config.yml), stamped everywhere ---------

BADGE = re.compile(r"https://colab\.research\.google\.com/github/[^)\s\"'\]]+")
INSTALL = re.compile(r"git\+https://github\.com/[^@\s\"']+@[\w./-]+")


def repository(root: Path = ROOT) -> tuple[str, str]:
    """(url, branch) of the repository, from _config.yml (``repository: url, branch``)."""
    cfg = yaml.safe_load((root / "_config.yml").read_text(encoding="utf-8"))
    repo = cfg.get("repository") or {}
    url, branch = str(repo.get("url", "")).rstrip("/"), str(repo.get("branch", "main"))
    if not url.startswith("https://github.com/") or url.count("/") != 4:
        raise ValueError(f"_config.yml: repository.url must be https://github.com/OWNER/NAME, got {url!r}")
    return url, branch


def colab_url(rel_path: str, root: Path = ROOT) -> str:
    """The Colab address of one chapter (its path relative to the repository root)."""
    url, branch = repository(root)
    return f"{COLAB}/github/{url.split('github.com/')[1]}/blob/{branch}/{rel_path}"


def install_spec(root: Path = ROOT) -> str:
    url, branch = repository(root)
    return f"git+{url}@{branch}"


def _stamp_text(text: str, badge: str | None, spec: str) -> str:
    if badge is not None:
        text = BADGE.sub(badge, text)
    return INSTALL.sub(spec, text)


def set_repo(url: str | None = None, branch: str | None = None, root: Path = ROOT) -> list[Path]:
    """Write ``url``/``branch`` into _config.yml (when given), then stamp the Colab badges and
    install cells of every chapter, the chapter template and the README. Returns changed files."""
    config = root / "_config.yml"
    text = config.read_text(encoding="utf-8")
    old_url = repository(root)[0]
    if url is not None:
        url = url.rstrip("/").removesuffix(".git")
        text = re.sub(r"(?m)^(  url:\s*).*$", lambda m: m.group(1) + url, text, count=1)
    if branch is not None:
        text = re.sub(r"(?m)^(  branch:\s*).*$", lambda m: m.group(1) + branch, text, count=1)
    changed = []
    if text != config.read_text(encoding="utf-8"):
        config.write_text(text, encoding="utf-8")
        changed.append(config)
    repository(root)  # validates
    spec = install_spec(root)
    for nb_path in chapters(root):
        raw = nb_path.read_text(encoding="utf-8")
        nb = json.loads(raw)
        badge = colab_url(nb_path.relative_to(root).as_posix(), root)
        touched = False
        for cell in nb["cells"]:
            src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            new = _stamp_text(src, badge, spec)
            if new != src:
                cell["source"] = new.splitlines(keepends=True)
                touched = True
        if touched:  # rewrite only what changed (nbformat's key order when the file had it)
            sort_keys = json.dumps(json.loads(raw), indent=1, ensure_ascii=False, sort_keys=True) + "\n" == raw
            text = json.dumps(nb, indent=1, ensure_ascii=False, sort_keys=sort_keys) + "\n"
            nb_path.write_text(text, encoding="utf-8")
            changed.append(nb_path)
    for path, badge in (
        (root / "tools" / "chapter_template.py", colab_url("book/NN_name.ipynb", root)),
        (root / "README.md", None),
    ):
        if path.exists():
            old = path.read_text(encoding="utf-8")
            new = _stamp_text(old, badge, spec).replace(old_url, repository(root)[0])
            if new != old:
                path.write_text(new, encoding="utf-8")
                changed.append(path)
    return changed


# --- Sphinx extension: local MathJax, the book's CSS/JS, plumbing hidden ------------------

MATHJAX_PATH = "mathjax/tex-chtml.js"


def mathjax_source() -> Path:
    """The folder of the MathJax 3 copy the book serves (from the ``sphinx-mathjax-offline`` package)."""
    import importlib

    try:
        mod = importlib.import_module("sphinx-mathjax-offline")
    except ImportError as exc:
        raise RuntimeError(
            "the book serves MathJax from its own build: pip install sphinx-mathjax-offline "
            "(it is in the book extra: pip install -e '.[book]')"
        ) from exc
    folder = Path(mod.__file__).parent / "static" / "mathjax"
    if not (folder / Path(MATHJAX_PATH).name).exists():
        raise RuntimeError(f"{folder} has no {Path(MATHJAX_PATH).name}: reinstall sphinx-mathjax-offline")
    return folder


def _sphinx_config_inited(app, config) -> None:
    mathjax_source()
    config.mathjax_path = MATHJAX_PATH
    if str(STATIC) not in [str(p) for p in config.html_static_path]:
        config.html_static_path.append(str(STATIC))
    app.add_css_file("mslib.css")
    app.add_js_file("mslib.js")


COLAB_BADGE = f"{COLAB}/assets/colab-badge.svg"


def _sphinx_local_badge(app, doctree) -> None:
    """Show the Colab badge from the book's own copy (book/_static/colab-badge.svg): offline,
    the remote image would be a broken picture. The link itself is unchanged."""
    from docutils import nodes

    for img in doctree.findall(nodes.image):
        if img.get("uri") == COLAB_BADGE:
            img["uri"] = "/" + (STATIC / "colab-badge.svg").relative_to(Path(app.srcdir).resolve()).as_posix()


def _sphinx_hide_plumbing(app, doctree) -> None:
    """Remove papermill's injected parameters cell and the ``# NBVAL_...`` marker lines from
    the code the page shows (the stored notebooks keep the markers for nbval and the tests)."""
    from docutils import nodes

    for node in list(doctree.findall(nodes.container)):
        cls = node.get("classes", [])
        if "cell" in cls and "tag_injected-parameters" in cls and node.parent is not None:
            node.parent.remove(node)
    for block in list(doctree.findall(nodes.literal_block)):
        parent = block.parent
        if parent is None or "cell_input" not in parent.get("classes", []):
            continue
        text = block.astext()
        if "NBVAL_" not in text:
            continue
        new = NBVAL_MARKER.sub("", text)
        block.children = []
        block += nodes.Text(new)
        block.rawsource = new


def _sphinx_dedupe_scripts(app, pagename, templatename, context, doctree) -> None:
    """Drop repeated inline scripts (sphinx-thebe's configuration is added twice, and the second
    ``const THEBE_JS_URL`` is a JavaScript error on every page)."""
    files = context.get("script_files")
    if not files:
        return
    seen, out = set(), []
    for js in files:
        attributes = json.dumps(getattr(js, "attributes", {}), sort_keys=True, default=str)
        key = (str(getattr(js, "filename", js) or ""), attributes)
        if key not in seen:
            seen.add(key)
            out.append(js)
    files[:] = out  # in place: later handlers (sphinx.ext.mathjax) append to this very list


API_NAME = re.compile(r"^(mslib(\.\w+)+|[A-Z]\w*[a-z]\w*|[a-z]\w*_\w+)(\(\))?$")


def _sphinx_link_api(app, doctree, docname) -> None:
    """Turn inline code that names a documented ``mslib`` object (``mslib.blocks``,
    ``mslib.losses.scale_consistency.inter_scale_loss``, ``MultiScaleSubtractionUnit``) into a
    link to the API reference, so "where it lives in mslib" leads to its documentation."""
    if app.builder.format != "html":
        return
    from docutils import nodes

    py = app.env.get_domain("py")
    objects = {name: (e.docname, e.node_id) for name, e in py.objects.items() if name.startswith("mslib.")}
    modules = {name: (e.docname, e.node_id) for name, e in py.modules.items() if name.startswith("mslib")}
    if not objects and not modules:
        return
    by_last: dict[str, list[str]] = {}
    for name in objects:
        by_last.setdefault(name.rsplit(".", 1)[-1], []).append(name)

    def target(text: str):
        if text in objects:
            return objects[text]
        last = text.rsplit(".", 1)[-1]
        if text.startswith("mslib."):
            top = ".".join(text.split(".")[:2])
            hits = [n for n in by_last.get(last, []) if n.startswith(top + ".")]
            if len(hits) == 1:
                return objects[hits[0]]
            parts = text.split(".")
            while parts:
                mod = ".".join(parts)
                if mod in modules:
                    return modules[mod]
                parts.pop()
            return None
        hits = by_last.get(last, [])
        return objects[hits[0]] if len(hits) == 1 else None

    for lit in list(doctree.findall(nodes.literal)):
        if isinstance(lit.parent, (nodes.reference, nodes.literal_block)) or lit.parent is None:
            continue
        text = lit.astext().strip()
        if not API_NAME.match(text):
            continue
        hit = target(text.removesuffix("()"))
        if hit is None or hit[0] == docname:
            continue
        uri = app.builder.get_relative_uri(docname, hit[0]) + "#" + hit[1]
        ref = nodes.reference("", "", internal=True, refuri=uri, classes=["mslib-api"])
        lit.replace_self(ref)
        ref += lit


SPHINX_ROLE = re.compile(r":(?:[\w-]+:)?[\w-]+:`[^`]*`")


def docstring_is_clean(lines: list[str]) -> bool:
    """True when docutils parses a docstring without a warning (Sphinx roles stubbed out)."""
    import io

    from docutils import nodes
    from docutils.core import publish_doctree

    probe = SPHINX_ROLE.sub("``x``", "\n".join(lines))
    try:
        tree = publish_doctree(
            probe, settings_overrides={"report_level": 2, "halt_level": 5, "warning_stream": io.StringIO()}
        )
    except Exception:  # noqa: BLE001 - any parser failure means "show it verbatim"
        return False
    if any(True for _ in tree.findall(nodes.problematic)):
        return False
    return not any(int(m["level"]) >= 2 for m in tree.findall(nodes.system_message))


def _sphinx_safe_docstring(app, what, name, obj, options, lines) -> None:
    """API reference: a docstring that is not valid reStructuredText (``|x|`` read as a
    substitution, an unclosed literal, ...) is shown verbatim instead of failing the strict
    build; well-formed docstrings render as usual."""
    if lines and not docstring_is_clean(lines):
        lines[:] = ["::", ""] + ["    " + line for line in lines] + [""]


def _sphinx_copy_mathjax(app, exc) -> None:
    if exc is None and app.builder.format == "html":
        from sphinx.util.fileutil import copy_asset

        copy_asset(str(mathjax_source()), os.path.join(app.outdir, "_static", "mathjax"))


def setup(app):
    """Sphinx entry point (``sphinx: local_extensions: {book: tools/}`` in _config.yml)."""
    app.connect("config-inited", _sphinx_config_inited)
    app.connect("doctree-read", _sphinx_local_badge, priority=400)  # before Sphinx collects images
    app.connect("doctree-read", _sphinx_hide_plumbing)
    app.connect("html-page-context", _sphinx_dedupe_scripts, priority=100)
    app.connect("autodoc-process-docstring", _sphinx_safe_docstring, priority=900)  # after napoleon
    app.connect("doctree-resolved", _sphinx_link_api)
    app.connect("build-finished", _sphinx_copy_mathjax)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}


# --- print / PDF ---------------------------------------------------------------------------


def find_chromium() -> str | None:
    """A Chromium binary (Debian's ``chromium``; ``$MSLIB_CHROMIUM`` overrides)."""
    for cand in (
        os.environ.get("MSLIB_CHROMIUM"),
        "/usr/bin/chromium",
        shutil.which("chromium"),
        shutil.which("chromium-browser"),
        shutil.which("google-chrome"),
    ):
        if cand and Path(cand).exists():
            return cand
    return None


def html_pages(html_dir: Path, root: Path = ROOT) -> list[Path]:
    """The built page of every file in _toc.yml (the root document is index.html's target)."""
    return [html_dir / f"{f}.html" for f in toc_files(root)]


def cmd_pdf(args) -> int:
    """Print every page of the built book to PDF with the print stylesheet (solutions open)."""
    html_dir = Path(args.html).resolve()
    if not (html_dir / "index.html").exists():
        print(f"{html_dir} has no built book: run `make book` (or `make book-html`) first", file=sys.stderr)
        return 2
    exe = find_chromium()
    if exe is None:
        print("no Chromium found: apt-get install -y chromium (or set MSLIB_CHROMIUM)", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    missing = [p for p in html_pages(html_dir) if not p.exists()]
    if missing:
        print(
            f"not built yet: {', '.join(p.name for p in missing)}; run `make book` (or `make book-html`) first",
            file=sys.stderr,
        )
        return 2
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        page = browser.new_page()
        page.route("**/*", lambda r: r.continue_() if r.request.url.startswith(("file:", "data:")) else r.abort())
        for i, html in enumerate(html_pages(html_dir), 1):
            page.goto(html.as_uri(), wait_until="load")
            page.wait_for_function(
                "() => !window.MathJax || !MathJax.startup || MathJax.startup.promise", timeout=30000
            )
            page.evaluate("() => (window.MathJax && MathJax.startup) ? MathJax.startup.promise : null")
            page.emulate_media(media="print")
            page.evaluate("() => document.querySelectorAll('details').forEach(d => d.open = true)")
            target = out / f"{i:02d}_{html.stem}.pdf"
            page.pdf(
                path=str(target),
                format="A4",
                print_background=True,
                margin={"top": "15mm", "bottom": "15mm", "left": "14mm", "right": "14mm"},
            )
            written.append(target)
            print(target.relative_to(ROOT) if target.is_relative_to(ROOT) else target, flush=True)
        browser.close()
    try:
        from pypdf import PdfWriter
    except ImportError:
        print("(pip install pypdf to also get one merged book.pdf)")
        return 0
    writer = PdfWriter()
    for f in written:
        writer.append(str(f))
    writer.write(str(out / "book.pdf"))
    print(out / "book.pdf")
    return 0


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
    r = sub.add_parser("set-repo", help="write the repository address into _config.yml and stamp it everywhere")
    r.add_argument("url", nargs="?", help="https://github.com/OWNER/NAME (default: keep _config.yml's, re-stamp)")
    r.add_argument("--branch", help="branch the badges and install cells use (default: keep _config.yml's)")
    d = sub.add_parser("pdf", help="print the built book to PDF (needs chromium and playwright)")
    d.add_argument("--html", default=str(ROOT / "_build" / "html"))
    d.add_argument("--out", default=str(ROOT / "_build" / "pdf"))
    args = p.parse_args(argv)
    if args.cmd == "list":
        for c in chapters():
            print(c.relative_to(ROOT))
        return 0
    if args.cmd == "set-repo":
        for f in set_repo(args.url, args.branch):
            print("stamped", f.relative_to(ROOT))
        url, branch = repository()
        print(f"repository: {url} (branch {branch})")
        return 0
    if args.cmd == "pdf":
        return cmd_pdf(args)
    return cmd_execute(args) if args.cmd == "execute" else cmd_build(args)


if __name__ == "__main__":
    sys.exit(main())
