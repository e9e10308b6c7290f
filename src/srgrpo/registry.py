"""One registry helper for every kind of name srgrpo keeps: features, selectors, datasets, graders,
rewards, the rewards' scorers, RewardBench methods, benchmark protocols and their sections.

A `Registry` is a dict (name -> entry), so `FEATURES[name]`, `name in DATASETS`, `SELECTORS.items()`
and `dict(...)` keep working; on top of a dict it

- refuses a name registered twice (`add`, or the `decorator` factory for `@register(...)`-style
  declarations), instead of letting the last import win silently;
- answers an unknown name with the one ValueError that lists the known ones (`lookup`, `check`,
  `unknown`), so no caller words its own;
- reads each entry's `version` (an int, 1 when the entry declares none): `versions(names)` is what a
  run records in `run.json` (see `srgrpo.records`), so a cache is never mixed across definitions.

Bump an entry's version whenever a change alters the numbers it produces (a feature's formula, a
dataset's gold answers, a grader's rules); cosmetic changes (help text, speed) keep it.
"""

from __future__ import annotations

import argparse
from typing import Callable, Generic, Iterable, TypeVar

T = TypeVar("T")


class UnknownName(ValueError, argparse.ArgumentTypeError):
    """A name no registry entry has. A ValueError for Python callers; an ArgumentTypeError too, so an
    argparse `type=` function that checks names shows this message as it is (argparse replaces the
    message of any other ValueError by "invalid value")."""


def version_of(entry) -> int:
    """An entry's `version` attribute (or key, for a dict entry); 1 when it declares none."""
    if isinstance(entry, dict):
        return int(entry.get("version", 1))
    return int(getattr(entry, "version", 1))


class Registry(dict, Generic[T]):
    """name -> entry, for one kind of name (`kind` is how errors call it: "feature", "dataset", ...)."""

    def __init__(self, kind: str, entries: Iterable[tuple[str, T]] | dict | None = None):
        super().__init__()
        self.kind = kind
        for name, entry in (entries.items() if isinstance(entries, dict) else entries or ()):
            self.add(name, entry)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {list(self)})"

    def add(self, name: str, entry: T, replace: bool = False) -> T:
        """Register `entry` as `name`; a second registration of a name is an error unless `replace`."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} name must be a non-empty string, got {name!r}")
        if name in self and not replace:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        super().__setitem__(name, entry)
        return entry

    def lookup(self, name: str, where: str = "") -> T:
        """The entry `name`; the registry's ValueError (`unknown`) otherwise."""
        if name not in self:
            raise self.unknown([name], where)
        return self[name]

    def check(self, names: Iterable[str], where: str = "", also: Iterable[str] = ()) -> list[str]:
        """`names` as a list, each checked against the registry; the unknown ones raise together."""
        names = list(names)
        unknown = [n for n in names if n not in self]
        if unknown:
            raise self.unknown(unknown, where, also)
        return names

    def unknown(self, names: Iterable[str], where: str = "", also: Iterable[str] = ()) -> UnknownName:
        """The one "unknown name" error of every registry: the names refused, where they were given
        (a flag, a file) when the caller says, and every known name (plus `also`, words a parser
        accepts beside the names, such as "all")."""
        names = list(names)
        given = f" in {where}" if where else ""
        plural = "s" if len(names) > 1 else ""
        return UnknownName(f"unknown {self.kind}{plural} {', '.join(map(repr, names))}{given}; "
                          f"known: {', '.join([*self, *also])}")

    def version(self, name: str) -> int:
        return version_of(self.lookup(name))

    def versions(self, names: Iterable[str] | None = None) -> dict[str, int]:
        """{name: version} of `names` (every entry when None), in registry order."""
        wanted = set(self) if names is None else set(self.check(names))
        return {name: version_of(entry) for name, entry in self.items() if name in wanted}

    def decorator(self, make: Callable[..., T]) -> Callable:
        """A `@register(name, ...)` decorator factory: `make(name, fn, *args, **kwargs)` builds the entry
        for the decorated function, which is returned unchanged."""

        def register(name: str, *args, **kwargs):
            def wrap(fn):
                self.add(name, make(name, fn, *args, **kwargs))
                return fn

            return wrap

        return register
