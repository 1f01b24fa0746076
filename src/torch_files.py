"""Damage that torch.load does not see. A torch.save file is a zip archive with a CRC-32 per record, and
torch.load does not check them: a file changed after it was written (a bad copy, a failing disk) loads,
with some weights or pixels silently wrong."""

import zipfile
from pathlib import Path


def damaged_record(path: Path) -> str | None:
    """The name of the first record whose bytes fail their CRC-32, or None (also for torch's pre-zip
    format, which has no checksums). Reading every byte costs ~1 ms per MB."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip()
    except zipfile.BadZipFile:
        return None
