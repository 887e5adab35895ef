"""The emulated predictions and their output files on disk, so that a restarted local
provider still knows them, finishes the ones it was running and delivers the callbacks it
owed, as Replicate would after an outage of its own."""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

_NAME = re.compile(r"^[a-z0-9]+(\.[a-z0-9]+)?$")  # prediction ids and "<id>.<extension>"


class PredictionArchive:
    def __init__(self, root: Path) -> None:
        self.predictions, self.files = root / "predictions", root / "files"
        self.predictions.mkdir(parents=True, exist_ok=True)
        self.files.mkdir(parents=True, exist_ok=True)

    def save(self, prediction_id: str, record: dict[str, Any]) -> None:
        self._write(self.predictions / f"{_checked(prediction_id)}.json", json.dumps(record).encode())

    def records(self) -> list[dict[str, Any]]:
        out = []
        for path in sorted(self.predictions.glob("*.json")):
            try:
                out.append(json.loads(path.read_bytes()))
            except (OSError, ValueError):
                continue  # a file half written when the process died: that prediction is lost
        return out

    def save_file(self, name: str, data: bytes, content_type: str) -> None:
        self._write(self.files / f"{_checked(name)}.type", content_type.encode())
        self._write(self.files / _checked(name), data)

    def load_file(self, name: str) -> tuple[bytes, str] | None:
        if not _NAME.match(name):
            return None
        try:
            return (self.files / name).read_bytes(), (self.files / f"{name}.type").read_text()
        except OSError:
            return None

    def forget(self, prediction_id: str, file_name: str) -> None:
        for path in (self.predictions / f"{prediction_id}.json", self.files / file_name,
                     self.files / f"{file_name}.type"):
            path.unlink(missing_ok=True)

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(temp, path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise


def _checked(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"not an archive name: {name!r}")
    return name
