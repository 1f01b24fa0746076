"""The IDX format of the MNIST files: a 4-byte magic, big-endian int32 sizes, then the raw values.

Knows nothing of Lightning. `.gz` files are recognised by their content, not their name.
"""

import gzip
import hashlib
import io
import zlib
from pathlib import Path

import torch

from src.errors import UserError, read_user_file

UBYTE = 0x08
GZIP_MAGIC = b"\x1f\x8b"
MAX_BYTES = 1 << 30  # bounds both a header's promise and a gzip bomb's output


def read_idx(path: str | Path, expected_sha256: str | None = None) -> torch.Tensor:
    """Read an unsigned-byte IDX file (`.gz` or raw) into a uint8 tensor shaped as its header says."""
    path = Path(path)
    raw = read_user_file(path)
    content = _decompress(path, raw) if raw[:2] == GZIP_MAGIC else raw
    shape = _parse_header(path, content)
    header_size = 4 + 4 * len(shape)
    if expected_sha256 is not None:
        digest = hashlib.sha256(content).hexdigest()
        if digest != expected_sha256:
            raise UserError(
                path,
                f"SHA-256 of its content is {digest[:16]}..., expected {expected_sha256[:16]}... "
                "(the file is corrupt or altered; replace it, or delete it to download it again)",
            )
    data = bytearray(content[header_size:])
    if not data:  # a header with a size 0 describes an empty file; torch.frombuffer refuses an empty buffer
        return torch.empty(shape, dtype=torch.uint8)
    return torch.frombuffer(data, dtype=torch.uint8).reshape(shape)


def _decompress(path: Path, raw: bytes) -> bytes:
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(raw)) as f:
            content = f.read(MAX_BYTES + 1)
    except (OSError, EOFError, zlib.error) as e:
        raise UserError(path, f"is not a valid gzip file ({e})") from None
    if len(content) > MAX_BYTES:
        raise UserError(path, f"decompresses to more than {MAX_BYTES >> 20} MiB; not an MNIST file")
    return content


def _parse_header(path: Path, content: bytes) -> tuple[int, ...]:
    if len(content) < 4 or content[:2] != b"\0\0":
        raise UserError(
            path, f"not an IDX file (starts with {content[:4].hex(' ') or 'nothing'}, expected 00 00 08 0N)"
        )
    dtype, ndim = content[2], content[3]
    if dtype != UBYTE:
        raise UserError(path, f"IDX value type 0x{dtype:02x} is not supported (MNIST uses 0x08, unsigned bytes)")
    if not 1 <= ndim <= 3:
        raise UserError(path, f"IDX header has {ndim} dimensions; MNIST files have 1 (labels) or 3 (images)")
    header_size = 4 + 4 * ndim
    if len(content) < header_size:
        raise UserError(path, f"truncated: {len(content)} bytes, shorter than its {header_size}-byte header")
    shape = tuple(int.from_bytes(content[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    count = 1
    for size in shape:
        count *= size
    if count > MAX_BYTES:
        raise UserError(path, f"IDX header promises {count} values, more than this reader accepts")
    found = len(content) - header_size
    if found < count:
        raise UserError(path, f"truncated: header {list(shape)} needs {count} bytes of data, found {found}")
    if found > count:
        raise UserError(path, f"has {found - count} bytes after the {count} bytes its header {list(shape)} describes")
    return shape
