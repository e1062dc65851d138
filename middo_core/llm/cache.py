"""Content-addressed cache of LLM answers: one JSON file per request, written atomically.

Key = sha256 of model, messages and sampling parameters (ChatRequest.cache_key), top log-probs
included: an answer stored without them never stands in for a request that asks for them. A
rerun, or a run resumed after a crash, reads the answers it already paid for instead of asking
again. Only successful answers are cached; the file holds the request and the answer, never
credentials.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from middo_core.files import remove_stale
from middo_core.llm.base import ChatRequest, ChatResult

TMP_PREFIX = ".tmp-"
STALE_TMP_S = 3600.0  # a temp file this old was left by a killed writer, not one still writing
SWEEP_EVERY_S = 600.0  # opening the cache sweeps it at most this often (all processes together)
SWEPT_MARK = ".swept"  # its modification time is the last sweep's


class LLMCache:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._made: set[Path] = set()
        self.swept = self.sweep() if self._sweep_due() else 0

    def _sweep_due(self) -> bool:
        """A sweep lists every answer file: with a million answers that is seconds, and a
        cluster opens the cache once per task. So the cache is swept when it was not in the
        last SWEEP_EVERY_S seconds (the mark is shared through the file system)."""
        import time

        try:
            return time.time() - (self.root / SWEPT_MARK).stat().st_mtime > SWEEP_EVERY_S
        except OSError:
            return True

    def sweep(self, older_than_s: float = STALE_TMP_S) -> int:
        """Remove temp files that killed writers left behind; returns how many."""
        if not self.root.is_dir():
            return 0
        removed = remove_stale(self.root.glob(f"*/{TMP_PREFIX}*"), older_than_s)
        (self.root / SWEPT_MARK).touch()
        return removed

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, request: ChatRequest) -> ChatResult | None:
        path = self._path(request.cache_key())
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return None  # a damaged entry is a miss; the next answer overwrites it
        return ChatResult.from_json(data["result"], cached=True)

    def put(self, request: ChatRequest, result: ChatResult) -> None:
        key = request.cache_key()
        path = self._path(key)
        if path.parent not in self._made:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._made.add(path.parent)
        entry = {"key": key, "model": request.model, "messages": request.message_dicts(),
                 "params": request.sampling(), "prefill": request.prefill,
                 "attempt": request.attempt, "result": result.to_json()}
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=TMP_PREFIX, suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(entry, fh, ensure_ascii=False)
            os.replace(tmp, path)  # readers see the old file or the whole new one, never half
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def __len__(self) -> int:
        if not self.root.is_dir():
            return 0
        return sum(1 for p in self.root.glob("*/*.json") if not p.name.startswith(TMP_PREFIX))
