"""One shape for every choice among kinds: layouts, protocols, model formats, exporters, towers,
poolings, losses, engines, detectors. A :class:`Registry` maps a name to a small object (a
class, a function or a dataclass instance); ``get`` is the only place an unknown name is
refused, always as ``unknown <kind> 'x'; known: a, b`` (an :class:`UnknownName`, an InputError).

Adding a kind is one ``register`` call beside its code; help texts and ``choices`` read
:meth:`Registry.names`.

Usage::

    >>> poolings = Registry("pooling")
    >>> @poolings.register("avg")
    ... def average(x):
    ...     return sum(x) / len(x)
    >>> poolings.get("avg")([1, 3])
    2.0
    >>> poolings.names()
    ('avg',)
    >>> poolings.get("max")
    Traceback (most recent call last):
    ...
    reid_search.registry.UnknownName: unknown pooling 'max'; known: avg
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar, overload

from .errors import InputError

T = TypeVar("T")


class UnknownName(InputError):
    """A name no registry entry has (the message lists the known ones)."""


class Registry(Generic[T]):
    """Named entries of one kind, in registration order."""

    def __init__(self, kind: str, error: type[InputError] = UnknownName) -> None:
        self.kind = kind
        self.error = error
        self._entries: dict[str, T] = {}

    @overload
    def register(self, name: str) -> Callable[[T], T]: ...
    @overload
    def register(self, name: str, entry: T) -> T: ...

    def register(self, name, entry=None):
        """Add ``entry`` under ``name`` (or, without ``entry``, a decorator that adds what it wraps).
        A name is registered once: a second entry of the same name is a programming error."""

        def add(item: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = item
            return item

        return add if entry is None else add(entry)

    def get(self, name: str, where: str | None = None) -> T:
        """The entry of ``name``; an unknown name is one :attr:`error` listing the known ones
        (after ``where: `` when given, e.g. the file that named it)."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            message = f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}"
            raise self.error(f"{where}: {message}" if where else message) from None

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def items(self) -> Iterator[tuple[str, T]]:
        return iter(list(self._entries.items()))

    def values(self) -> Iterator[T]:
        return iter(list(self._entries.values()))

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self.names())})"
