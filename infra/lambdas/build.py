"""Package the Lambdas: infra/build/feed_command.zip, the same bytes for the same source.

    python3 infra/lambdas/build.py

Only the standard library (the function needs nothing beyond the runtime's boto3). The zip is
reproducible (fixed timestamps and permissions), so terraform sees a change of package only when
the code changed.
"""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
BUILD = HERE.parent / "build"
PACKAGES = {"feed_command.zip": ["feed_command.py"]}
_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip can hold


def build(out_dir: Path = BUILD) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    made = []
    for name, files in PACKAGES.items():
        target = out_dir / name
        partial = target.with_suffix(".zip.partial")
        with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for file in sorted(files):
                info = zipfile.ZipInfo(file, date_time=_EPOCH)
                info.external_attr = 0o644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, (HERE / file).read_bytes())
        partial.replace(target)
        made.append(target)
    return made


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else BUILD
    for path in build(out):
        print(path)
