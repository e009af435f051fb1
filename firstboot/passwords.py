"""Password hashes for the data services, so that no password is ever stored in clear.

* ``nt_hash``: what Samba's passdb keeps for an SMB user (MD4 of the UTF-16LE password, the
  NT hash; ``pdbedit -i smbpasswd:FILE`` imports it). Python's hashlib has no MD4 when
  OpenSSL's legacy provider is not loaded (Debian's default), so MD4 is written out here
  from RFC 1320; the tests check it against the RFC's test suite.
* ``scram_sha256``: what PostgreSQL keeps for a role's password
  (``SCRAM-SHA-256$ITER:SALT$STOREDKEY:SERVERKEY``, RFC 5802 / RFC 7677); PostgreSQL takes
  such a verifier as the PASSWORD of ``CREATE ROLE`` and stores it as it is.

Pure: the salt comes from the caller's random source.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct

_MASK = 0xFFFFFFFF
SCRAM_ITERATIONS = 4096  # PostgreSQL's default (scram_iterations)


def _rol(value: int, shift: int) -> int:
    value &= _MASK
    return ((value << shift) | (value >> (32 - shift))) & _MASK


def md4(data: bytes) -> bytes:
    """MD4 (RFC 1320) of data."""
    msg = bytearray(data)
    bit_length = (8 * len(data)) & 0xFFFFFFFFFFFFFFFF
    msg.append(0x80)
    while len(msg) % 64 != 56:
        msg.append(0)
    msg += bit_length.to_bytes(8, "little")
    a, b, c, d = 0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476
    for offset in range(0, len(msg), 64):
        x = struct.unpack("<16I", bytes(msg[offset:offset + 64]))
        aa, bb, cc, dd = a, b, c, d
        for i in (0, 4, 8, 12):  # round 1: F(x, y, z) = xy v not(x) z
            a = _rol(a + ((b & c) | (~b & d)) + x[i], 3)
            d = _rol(d + ((a & b) | (~a & c)) + x[i + 1], 7)
            c = _rol(c + ((d & a) | (~d & b)) + x[i + 2], 11)
            b = _rol(b + ((c & d) | (~c & a)) + x[i + 3], 19)
        for i in (0, 1, 2, 3):  # round 2: G(x, y, z) = xy v xz v yz
            a = _rol(a + ((b & c) | (b & d) | (c & d)) + x[i] + 0x5A827999, 3)
            d = _rol(d + ((a & b) | (a & c) | (b & c)) + x[i + 4] + 0x5A827999, 5)
            c = _rol(c + ((d & a) | (d & b) | (a & b)) + x[i + 8] + 0x5A827999, 9)
            b = _rol(b + ((c & d) | (c & a) | (d & a)) + x[i + 12] + 0x5A827999, 13)
        for i in (0, 2, 1, 3):  # round 3: H(x, y, z) = x xor y xor z
            a = _rol(a + (b ^ c ^ d) + x[i] + 0x6ED9EBA1, 3)
            d = _rol(d + (a ^ b ^ c) + x[i + 8] + 0x6ED9EBA1, 9)
            c = _rol(c + (d ^ a ^ b) + x[i + 4] + 0x6ED9EBA1, 11)
            b = _rol(b + (c ^ d ^ a) + x[i + 12] + 0x6ED9EBA1, 15)
        a, b, c, d = (a + aa) & _MASK, (b + bb) & _MASK, (c + cc) & _MASK, (d + dd) & _MASK
    return struct.pack("<4I", a, b, c, d)


def nt_hash(password: str) -> str:
    """The NT hash of password, as smbpasswd(5) writes it (32 upper-case hex digits)."""
    return md4(password.encode("utf-16-le")).hex().upper()


def scram_keys(password: str, salt: bytes, iterations: int) -> tuple[bytes, bytes]:
    """(StoredKey, ServerKey) of RFC 5802 for SHA-256."""
    salted = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    return hashlib.sha256(client_key).digest(), server_key


def scram_sha256(password: str, salt: bytes, iterations: int = SCRAM_ITERATIONS) -> str:
    """PostgreSQL's SCRAM-SHA-256 verifier of password (ASCII passwords: SASLprep leaves
    them unchanged, which the wizard's validator ensures)."""
    stored, server = scram_keys(password, salt, iterations)
    b64 = base64.b64encode
    return (f"SCRAM-SHA-256${iterations}:{b64(salt).decode()}$"
            f"{b64(stored).decode()}:{b64(server).decode()}")
