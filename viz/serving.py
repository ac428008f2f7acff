"""How this server may be used: public mode's limits, and a fair queue for forward passes.

A local run (the default) lets the user load any hub id or local directory. Public mode, for a
class or the internet, is one environment variable:

    ATLAS_PUBLIC=1                      catalog models only (plus ATLAS_ALLOWED_MODELS), no directories,
                                        no server paths or library messages on the page
    ATLAS_ALLOWED_MODELS=gpt2,org/name  extra hub ids a public server serves
    ATLAS_MAX_TOKENS=1024               tokens per pass, per session (public default 1,024)
    ATLAS_CONCURRENT_PASSES=2           forward passes at once; later ones wait their turn (public default 2)
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from viz.errors import AtlasError

_TRUE = ("1", "true", "yes", "on")


@dataclass(frozen=True)
class ServingPolicy:
    public: bool = False
    allowed_hub_ids: tuple[str, ...] = ()
    max_tokens: int | None = None  # None: only the model's own limit
    concurrent_passes: int | None = None  # None: unbounded

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> ServingPolicy:
        public = env.get("ATLAS_PUBLIC", "").strip().lower() in _TRUE
        allowed = tuple(dict.fromkeys(i.strip() for i in env.get("ATLAS_ALLOWED_MODELS", "").split(",") if i.strip()))
        return cls(
            public=public,
            allowed_hub_ids=allowed,
            max_tokens=_positive(env.get("ATLAS_MAX_TOKENS"), 1024 if public else None),
            concurrent_passes=_positive(env.get("ATLAS_CONCURRENT_PASSES"), 2 if public else None),
        )

    def check_model(self, key: str, catalog: Mapping[str, object]) -> None:
        """Refuse a model key this server does not serve (public mode: catalog and allowlist only)."""
        if not self.public or key in catalog or (key.startswith("hub:") and key[4:] in self.allowed_hub_ids):
            return
        raise AtlasError("This server only offers the models in its list. Pick one in the sidebar.")

    def token_cap(self, model_limit: int) -> int:
        return min(model_limit, self.max_tokens) if self.max_tokens else model_limit


def _positive(value: str | None, default: int | None) -> int | None:
    return int(value) if value and value.strip().isdigit() and int(value) > 0 else default


class PassQueue:
    """At most `slots` forward passes at once; the rest wait first come, first served.

    `turn(on_wait)` calls `on_wait(place)` (1 = next) whenever a waiter's place changes, outside the
    lock, so a page can tell its user where they stand.
    """

    def __init__(self, slots: int | None) -> None:
        self.slots = slots
        self._changed = threading.Condition()
        self._waiting: list[object] = []
        self._running = 0

    @contextmanager
    def turn(self, on_wait: Callable[[int], None] = lambda place: None) -> Iterator[None]:
        if self.slots is None:
            yield
            return
        ticket, told = object(), None
        with self._changed:
            self._waiting.append(ticket)
        try:
            while True:
                with self._changed:
                    place = self._waiting.index(ticket) + 1
                    if place == 1 and self._running < self.slots:
                        self._waiting.pop(0)
                        self._running += 1
                        break
                if place != told:
                    on_wait(place)
                    told = place
                with self._changed:
                    self._changed.wait(timeout=0.5)
        except BaseException:  # e.g. the session's script was stopped while waiting
            with self._changed:
                if ticket in self._waiting:
                    self._waiting.remove(ticket)
                self._changed.notify_all()
            raise
        try:
            yield
        finally:
            with self._changed:
                self._running -= 1
                self._changed.notify_all()

    @property
    def waiting(self) -> int:
        with self._changed:
            return len(self._waiting)

    @property
    def running(self) -> int:
        with self._changed:
            return self._running
