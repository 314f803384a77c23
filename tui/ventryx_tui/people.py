"""Names for the ids the server sends: who ``mem_…`` and ``key_…`` are, learnt from the
member and key lists the dashboard loads anyway, so tables show people, not only ids."""

from __future__ import annotations

from ventryx_shared.api_keys import ApiKey
from ventryx_shared.members import Member

from . import formatting as fmt


class Directory:
    def __init__(self) -> None:
        self.members: dict[str, Member] = {}
        self.key_names: dict[str, str] = {}

    def learn(self, members: list[Member] | None = None, keys: list[ApiKey] | None = None) -> None:
        self.members.update((member.id, member) for member in members or [])
        self.key_names.update((key.id, key.name) for key in keys or [])

    def short(self, actor_id: str | None) -> str:
        """A table cell: the member's email or the key's name, else the id."""
        if actor_id in self.members:
            return self.members[actor_id].email
        if actor_id in self.key_names:
            return f"key {self.key_names[actor_id]}"
        if actor_id == "leak_report":
            return "a leak report"
        return fmt.identifier(actor_id)

    def label(self, actor_id: str | None) -> str:
        """A detail line: name, email and id, as much as is known."""
        if actor_id in self.members:
            member = self.members[actor_id]
            return f"{member.name} <{member.email}> {fmt.identifier(actor_id)}"
        if actor_id in self.key_names:
            return f"key {self.key_names[actor_id]!r} {fmt.identifier(actor_id)}"
        return self.short(actor_id)

    def member_id(self, email: str) -> str | None:
        wanted = email.strip().lower()
        return next((m.id for m in self.members.values() if m.email.lower() == wanted), None)
