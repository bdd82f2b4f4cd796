"""One checked download (used by `mambast weights fetch`): streamed into the target's temp file, published
only when every byte the server announced arrived and the hash is the one expected.

A server that closes early (fewer bytes than its Content-Length, or http.client's IncompleteRead), a network
error, or a SHA-256 that differs from the pinned one (or the publisher's prefix) is one UserError line, and
nothing is left in the folder. Nothing in mambast calls this unless the user asks for a download.
"""

from __future__ import annotations

import hashlib
import http.client
import urllib.request
from pathlib import Path

from ..errors import UserError
from ..fs import atomic_open

__all__ = ["download"]

BLOCK = 1 << 20


def download(url: str, dest: str | Path, what: str, sha256: str = "", sha256_prefix: str = "",
             timeout: float = 60.0) -> str:
    """Download `url` to `dest` atomically and return the hex SHA-256 of what arrived.

    sha256: the full published hash, checked when given; sha256_prefix: a publisher's hash prefix (e.g.
    torchvision's 8 hex digits in the file name), checked when given. `what` names the file in errors.
    """
    dest = Path(dest)
    with atomic_open(dest) as f:  # published at dest only if this block ends without an error
        digest, received, expected = hashlib.sha256(), 0, None
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (user-requested download)
                length = resp.headers.get("Content-Length")
                expected = int(length) if length and length.isdigit() else None
                while block := resp.read(BLOCK):
                    digest.update(block)
                    f.write(block)
                    received += len(block)
        except http.client.IncompleteRead as e:
            received += len(e.partial)
        except (OSError, ValueError, http.client.HTTPException) as e:
            raise UserError(f"download of {what} from {url} failed (network access needed): {e}") from None
        if expected is not None and received != expected:
            raise UserError(f"download of {what} from {url} was cut off: {received} of {expected} bytes "
                            "arrived; nothing was kept (try again)")
        if expected is None and received == 0:
            raise UserError(f"download of {what} from {url} gave an empty file; nothing was kept")
        sha = digest.hexdigest()
        if sha256 and sha != sha256.lower():
            raise UserError(f"{what}: SHA-256 {sha} is not the published {sha256}; nothing was kept")
        if sha256_prefix and not sha.startswith(sha256_prefix.lower()):
            raise UserError(f"{what}: SHA-256 {sha} does not start with the published {sha256_prefix}; "
                            "nothing was kept")
    return sha
