"""Sphinx extension: serve MathJax and the Jupyter widget manager from the book itself.

By default Sphinx loads MathJax, and myst-nb loads require.js and the widget manager, from CDNs,
so a downloaded copy of the book shows raw LaTeX and empty widget areas without internet. This
extension takes those scripts from their npm registry packages (pinned versions, checked against
the registry's sha512 integrity), unpacks the files the book needs into ``.vendor/`` (a cache,
git-ignored) and adds them to the build's ``_static/vendor/``. Math is typeset with MathJax's SVG
output, which carries its fonts inside the script: web fonts loaded from ``file://`` pages are
blocked by browsers, SVG paths are not.

The packages are fetched once per checkout (about 12 MB); after that the build is offline.
"""
from __future__ import annotations

import base64
import hashlib
import io
import shutil
import tarfile
import urllib.request
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STATIC_SUBDIR = "vendor"  # the files land in _static/vendor/<package>/...
# .vendor/ is added to html_static_path, so its "vendor" folder lands in _static/vendor
STATIC_ROOT = ROOT / ".vendor"
CACHE = STATIC_ROOT / STATIC_SUBDIR
OWN_STATIC = Path(__file__).resolve().parent / "static"   # widgets_offline.js
REGISTRY = "https://registry.npmjs.org"


@dataclass(frozen=True)
class NpmPackage:
    name: str
    version: str
    integrity: str            # the registry's "dist.integrity" (SRI sha512)
    folder: str               # folder under _static/vendor/
    keep: tuple[str, ...]     # path prefixes inside the tarball's package/ to unpack
    license: str

    @property
    def tarball_url(self) -> str:
        base = self.name.split("/")[-1]
        return f"{REGISTRY}/{self.name}/-/{base}-{self.version}.tgz"


MATHJAX = NpmPackage(
    "mathjax", "3.2.2",
    "sha512-Bt+SSVU8eBG27zChVewOicYs7Xsdt40qm4+UpHyX7k0/O9NliPc+x77k1/FEsPsjKPZGJvtRZM1vO+geW0OhGw==",
    "mathjax",
    # the SVG bundle, the TeX extensions it autoloads, and the menu's accessibility components
    ("es5/tex-svg.js", "es5/input/tex/extensions/", "es5/a11y/", "es5/ui/", "es5/sre/", "LICENSE"),
    "Apache-2.0",
)
REQUIREJS = NpmPackage(
    "requirejs", "2.3.8",
    "sha512-7/cTSLOdYkNBNJcDMWf+luFvMriVm7eYxp4BcFCsAX0wF421Vyce5SXP17c+Jd5otXKGNehIonFlyQXSowL6Mw==",
    "requirejs", ("require.js",), "MIT",
)
WIDGET_MANAGER = NpmPackage(
    "@jupyter-widgets/html-manager", "1.0.15",
    "sha512-5thBIV6ymNgmPVOHvzx+gGy8ZSKmSazhtGw4/c4xJDVzRhG9PTeQsRjF3FUTopvFi//SABeNz1yp47bCrJ3CQA==",
    "html-manager",
    # embed-amd.js and the icon fonts its CSS refers to (hashed names, next to it)
    ("dist/embed-amd.js", "dist/embed.js.LICENSE.txt", "dist/*.woff2", "dist/*.woff", "dist/*.ttf",
     "dist/*.eot", "dist/*.svg"),
    "BSD-3-Clause",
)
PACKAGES = (MATHJAX, REQUIREJS, WIDGET_MANAGER)

# paths relative to _static, as Sphinx's add_js_file and mathjax_path take them
MATHJAX_PATH = f"{STATIC_SUBDIR}/mathjax/es5/tex-svg.js"
WIDGET_SCRIPTS = {
    f"{STATIC_SUBDIR}/requirejs/require.js": {},
    # our own: maps the manager's module path to the bundle, bridges MathJax 2 calls to MathJax 3
    "widgets_offline.js": {},
    # no CDN attribute: every widget model the book stores (controls, base, output) is built into
    # the manager, and a model that is not must fail visibly rather than fetch code from the web
    f"{STATIC_SUBDIR}/html-manager/dist/embed-amd.js": {},
}


def _check_integrity(data: bytes, integrity: str, what: str) -> None:
    algorithm, _, expected = integrity.partition("-")
    if algorithm != "sha512":
        raise ValueError(f"{what}: unsupported integrity algorithm {algorithm!r}")
    actual = base64.b64encode(hashlib.sha512(data).digest()).decode()
    if actual != expected:
        raise RuntimeError(f"{what}: the download does not match its pinned sha512 integrity "
                           f"(expected {expected}, got {actual}); refusing to use it")


def _wanted(member: str, keep: tuple[str, ...]) -> bool:
    """Whether tarball member ``member`` is kept: ``keep`` holds exact paths, folders ending in "/"
    and glob patterns, all relative to the tarball's ``package/``."""
    path = member.removeprefix("package/")
    return any(fnmatch(path, k) if "*" in k else (path == k or (k.endswith("/") and path.startswith(k)))
               for k in keep)


def ensure_package(package: NpmPackage, cache: Path = CACHE) -> Path:
    """Unpack ``package`` into ``cache/<folder>`` unless that version is there; return the folder."""
    target = cache / package.folder
    stamp = target / ".installed"
    if stamp.exists() and stamp.read_text() == package.integrity:
        return target
    what = f"{package.name}@{package.version}"
    try:
        with urllib.request.urlopen(package.tarball_url, timeout=120) as response:
            data = response.read()
    except OSError as error:
        raise RuntimeError(f"could not download {what} from {package.tarball_url} ({error}); the book "
                           "bundles it so that its pages work offline, and needs the npm registry once "
                           "per checkout") from error
    _check_integrity(data, package.integrity, what)
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        members = [m for m in archive.getmembers() if m.isfile() and _wanted(m.name, package.keep)]
        for member in members:
            # tarfile's "data" filter refuses absolute paths, links and ".." (a tampered archive)
            member.name = member.name.removeprefix("package/")
            archive.extract(member, target, filter="data")
    if not members:
        raise RuntimeError(f"{what}: none of {package.keep} found in the tarball")
    stamp.write_text(package.integrity)
    return target


def ensure_all(cache: Path = CACHE) -> Path:
    """Fetch every package into ``cache`` and write a README naming versions and licenses."""
    for package in PACKAGES:
        ensure_package(package, cache)
    lines = ["Third-party scripts bundled so that the book works offline (see tools/offline_assets.py):", ""]
    lines += [f"- {p.folder}/: npm {p.name}@{p.version} ({p.license}), {p.tarball_url}" for p in PACKAGES]
    (cache / "README.txt").write_text("\n".join(lines) + "\n")
    return cache


def _configure(app, config) -> None:
    ensure_all()
    added = [str(STATIC_ROOT), str(OWN_STATIC)]
    config.html_static_path = [*config.html_static_path, *(p for p in added if p not in config.html_static_path)]
    config.mathjax_path = MATHJAX_PATH
    config.nb_ipywidgets_js = dict(WIDGET_SCRIPTS)


def _drop_duplicate_scripts(app, pagename, templatename, context, doctree) -> None:
    """Keep one copy of each script: sphinx-thebe's inline config (``const THEBE_JS_URL = ...``)
    reaches every page twice, and the second copy is a console SyntaxError (redeclared const)."""
    seen, unique = set(), []
    for script in context.get("script_files", []):
        # the copies differ only in filename None vs "" (inline scripts)
        key = (getattr(script, "filename", None) or "", tuple(sorted(getattr(script, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def setup(app):
    app.connect("config-inited", _configure, priority=900)
    app.connect("html-page-context", _drop_duplicate_scripts, priority=900)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
