"""The book's bundled scripts (tools/offline_assets.py): pinned, verified, unpacked safely."""
from __future__ import annotations

import base64
import hashlib
import io
import tarfile

import pytest

from tools import offline_assets
from tools.offline_assets import NpmPackage, ensure_package


def _tarball(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _integrity(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


class _Response(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.fixture
def registry(monkeypatch):
    """A fake npm registry: maps tarball URLs to bytes and counts downloads."""
    served, downloads = {}, []

    def urlopen(url, timeout=None):
        downloads.append(url)
        return _Response(served[url])

    monkeypatch.setattr(offline_assets.urllib.request, "urlopen", urlopen)
    return served, downloads


def _package(data: bytes, keep=("dist/app.js", "fonts/", "dist/*.woff2")) -> NpmPackage:
    return NpmPackage("@scope/widget", "1.2.3", _integrity(data), "widget", keep, "MIT")


def test_only_the_listed_files_are_unpacked_and_a_second_call_downloads_nothing(tmp_path, registry):
    served, downloads = registry
    data = _tarball({"package/dist/app.js": b"js", "package/dist/app.js.map": b"map", "package/fonts/a.woff": b"f",
                     "package/dist/x.woff2": b"w", "package/README.md": b"r"})
    package = _package(data)
    assert package.tarball_url == "https://registry.npmjs.org/@scope/widget/-/widget-1.2.3.tgz"
    served[package.tarball_url] = data
    target = ensure_package(package, tmp_path)
    files = sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file() and p.name != ".installed")
    assert files == ["dist/app.js", "dist/x.woff2", "fonts/a.woff"]
    ensure_package(package, tmp_path)
    assert len(downloads) == 1


def test_a_download_that_does_not_match_its_pinned_hash_is_refused(tmp_path, registry):
    served, _ = registry
    package = _package(_tarball({"package/dist/app.js": b"the real one"}))
    served[package.tarball_url] = _tarball({"package/dist/app.js": b"tampered"})
    with pytest.raises(RuntimeError, match="does not match its pinned sha512"):
        ensure_package(package, tmp_path)
    assert not (tmp_path / "widget").exists()


def test_a_member_escaping_the_target_folder_is_refused(tmp_path, registry):
    served, _ = registry
    data = _tarball({"package/dist/app.js": b"js", "package/fonts/../../../evil.js": b"x"})
    package = _package(data)
    served[package.tarball_url] = data
    with pytest.raises(tarfile.OutsideDestinationError):
        ensure_package(package, tmp_path / "cache")
    assert not (tmp_path / "evil.js").exists()


def test_no_registry_is_a_clear_error(tmp_path, monkeypatch):
    def offline(url, timeout=None):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(offline_assets.urllib.request, "urlopen", offline)
    with pytest.raises(RuntimeError, match="could not download @scope/widget@1.2.3"):
        ensure_package(_package(b""), tmp_path)


def test_the_pinned_packages_are_exact_versions_with_sha512_integrity():
    for package in offline_assets.PACKAGES:
        assert package.version.count(".") == 2 and package.version.replace(".", "").isdigit()
        assert package.integrity.startswith("sha512-") and len(base64.b64decode(package.integrity[7:])) == 64
