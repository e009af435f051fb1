"""SHA-256 and a constant-time comparison without OpenSSL: CPython's own SHA-256 (the
module hashlib falls back on: ``_sha2`` from Python 3.12 on, ``_sha256`` before) and the
comparison ``hmac`` falls back on (``_operator._compare_digest``).

The daemon hashes only short frames and its configuration digest. ``import hashlib`` (and
``import hmac``, which imports it) loads OpenSSL's libcrypto, about 1.2 MiB of the
supervisor's PSS in the image, for nothing it uses; and OpenSSL's SHA-256 is the slower one
on a cold path (see ``codec._mac``). Where CPython was built without its own hash modules,
hashlib's and hmac's are used (the same results).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the same signatures and results
    from hashlib import sha256
    from hmac import compare_digest
else:
    try:
        from _sha2 import sha256
    except ImportError:  # Python 3.11
        try:
            from _sha256 import sha256
        except ImportError:  # a CPython built without its own hashes
            from hashlib import sha256
    try:
        from _operator import _compare_digest as compare_digest
    except ImportError:  # every CPython has it
        from hmac import compare_digest

__all__ = ["compare_digest", "sha256"]
