"""How the project reports a problem: one exception type, and a list that gathers every problem before raising."""

from __future__ import annotations

from dataclasses import dataclass, field


class PopRokError(ValueError):
    """Input that does not look like POP-ROK: the message names the file and what to do."""


@dataclass
class Problems:
    """Every problem found in the input, by file, so one message can list them all."""

    entries: list[tuple[str, str]] = field(default_factory=list)

    def add(self, file: str, message: str) -> None:
        self.entries.append((file, message))

    def __bool__(self) -> bool:
        return bool(self.entries)

    def report(self) -> str:
        return "\n".join(f"  - {file}: {message}" for file, message in self.entries)
