"""Where the metric networks' weight files come from: user paths, a cache folder, or an opt-in fetch.

Nothing is ever downloaded implicitly. Each metric needs files the user passes (``--inception`` ...) or that
sit
in the weights folder (``--weights-dir``, else ``$MAMBAST_WEIGHTS``, else ``~/.cache/mambast/weights``) under
their usual file names. ``mambast weights fetch NAME`` downloads a known file from its public home into that
folder and records its SHA-256 in ``manifest.json`` next to it (checking it against the hash prefix the
publisher put in the file name, where there is one).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from mambast.errors import FieldError, UserError
from mambast.fs import atomic_write_text

__all__ = ["KNOWN", "WeightFile", "weights_dir", "resolve", "fetch", "sha256_file", "MANIFEST"]

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class WeightFile:
    """A known weight file: its usual name, its public home, the field that gives its path (`EvalWeights`;
    the CLI's flag of the same name) and what it is for."""

    name: str
    filename: str
    url: str
    field: str
    purpose: str
    sha256_prefix: str = ""  # publishers like torchvision put the first hex digits of the SHA-256 in the name
    sha256: str = ""  # the full SHA-256 where the publisher gives one (checked by `fetch`)


KNOWN: dict[str, WeightFile] = {
    w.name: w
    for w in (
        WeightFile(
            "art_inception", "art_inception.pth",
            "https://huggingface.co/matthias-wright/art_inception/resolve/main/art_inception.pth",
            "inception", "FID / ArtFID (art-tuned Inception-v3 of the art-fid package)",
        ),
        WeightFile(
            "lpips_alexnet", "alexnet-owt-7be5be79.pth",
            "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
            "lpips_alexnet", "LPIPS backbone (torchvision ImageNet AlexNet)", "7be5be79",
        ),
        WeightFile(
            "lpips_heads", "alex.pth",
            "https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/alex.pth",
            "lpips_heads", "LPIPS v0.1 linear heads for AlexNet (lpips package)",
        ),
        WeightFile(
            "vgg19", "vgg19-dcbb9e9d.pth", "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
            "vgg19", "CFSD (torchvision ImageNet VGG-19, relu3_1)", "dcbb9e9d",
        ),
        WeightFile(
            "pt_inception", "pt_inception-2015-12-05-6726825d.pth",
            "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
            "pt_inception-2015-12-05-6726825d.pth",
            "fid_inception", "plain FID on ImageNet Inception (pytorch-fid's TF port)",
            "6726825d",
        ),
        WeightFile(
            "vgg_normalised", "vgg_normalised.pth", "",
            "vgg", "paper content / style losses (AdaIN / StyTr2 / Mamba-ST release; no stable public URL)",
        ),
    )
}  # fmt: skip


def weights_dir(override: str | Path | None = None) -> Path:
    """The weights folder: `override`, else $MAMBAST_WEIGHTS, else ~/.cache/mambast/weights."""
    if override:
        return Path(override).expanduser()
    env = os.environ.get("MAMBAST_WEIGHTS")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "mambast" / "weights"


def resolve(name: str, explicit: str | Path | None, folder: str | Path | None = None) -> tuple[Path | None, str]:
    """(path, "") for weight `name` from an explicit path or the weights folder, or (None, why it is missing).

    An explicit path that does not exist, or an empty file, is an error (UserError), not a silent skip.
    """
    known = KNOWN[name]
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise FieldError(f"{known.field} {path}: file not found", known.field)
        _not_empty(path, known)
        return path, ""
    candidate = weights_dir(folder) / known.filename
    if candidate.is_file():
        _not_empty(candidate, known)
        return candidate, ""
    how = f"`mambast weights fetch {name}` downloads it, network needed" if known.url else known.purpose
    return None, f"no {known.filename}: give its path as {known.field} or put it in {candidate.parent} ({how})"


def _not_empty(path: Path, known: WeightFile) -> None:
    """One-line FieldError (naming the weight's field) for a 0-byte file (an interrupted copy or download)."""
    if path.stat().st_size == 0:
        raise FieldError(f"{known.field} {path}: empty file (0 bytes); copy or fetch {known.filename} again",
                         known.field)


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _record(folder: Path, name: str, filename: str, url: str, sha: str) -> None:
    manifest = folder / MANIFEST
    data = json.loads(manifest.read_text()) if manifest.is_file() else {}
    data[name] = {"file": filename, "url": url, "sha256": sha}
    atomic_write_text(manifest, json.dumps(data, indent=2, sort_keys=True) + "\n")


def fetch(
    name: str, folder: str | Path | None = None, url: str | None = None, force: bool = False
) -> tuple[Path, str]:
    """Download known weight `name` (network access needed) into the weights folder -> (path, sha256).

    url: a mirror to use instead of the public home. The download is checked against the Content-Length
    and the published SHA-256 (or its prefix) and kept only when whole (mambast.weights.download). A file
    already in the folder is hashed and recorded without a URL (it did not come from one here).
    """
    from mambast.fs import ensure_dir
    from mambast.weights.download import download

    if name not in KNOWN:
        raise UserError(f"unknown weight file {name!r}; known: {', '.join(KNOWN)}")
    known = KNOWN[name]
    source = url or known.url
    if not source:
        raise FieldError(
            f"{name} has no stable public download ({known.purpose}): copy the file into the weights folder, "
            "or give a url",
            "url")
    out_dir = ensure_dir(weights_dir(folder))  # one line when it names a file
    dest = out_dir / known.filename
    if dest.is_file() and not force:
        sha = sha256_file(dest)
        try:  # keep the URL only if the manifest says this very file came from it
            prior = json.loads((out_dir / MANIFEST).read_text()).get(name) or {}
        except (OSError, ValueError, AttributeError):
            prior = {}
        _record(out_dir, name, known.filename, prior.get("url") if prior.get("sha256") == sha else None, sha)
        return dest, sha
    sha = download(source, dest, name, sha256=known.sha256, sha256_prefix=known.sha256_prefix)
    _record(out_dir, name, known.filename, source, sha)
    return dest, sha
