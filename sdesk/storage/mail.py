"""Mail threading's memory: the messages intake has taken (by Message-ID, or a digest), the
ticket each became, and their attachments' metadata (never their bytes)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .rows import Tx


class MailStore:
    @staticmethod
    def seen(tx: Tx, key: str) -> bool:
        """Whether a message known by `key` was taken before (an mbox read twice takes nothing twice)."""
        return tx.conn.execute("SELECT 1 FROM mail_messages WHERE message_id = ?", (key,)).fetchone() is not None

    @staticmethod
    def ticket_of_thread(tx: Tx, references: list[str]) -> int | None:
        """The ticket of the newest message among `references` that became or joined one."""
        row = tx.conn.execute(
            f"SELECT ticket_id FROM mail_messages WHERE message_id IN ({','.join('?' * len(references))}) "
            "AND ticket_id IS NOT NULL ORDER BY rowid DESC LIMIT 1", references).fetchone()
        return row[0] if row else None

    @staticmethod
    def remember(tx: Tx, message_id: str | None, *, ticket_id: int | None, attachments: list[dict],
                       seen: str | None = None) -> None:
        """`seen`: the key the message is known by (its Message-ID, or its digest without one)."""
        if seen or message_id:
            tx.conn.execute("INSERT INTO mail_messages (message_id, ticket_id, received_at) VALUES (?, ?, ?) "
                            "ON CONFLICT (message_id) DO NOTHING",
                            (seen or message_id, ticket_id, tx.at))
        if ticket_id is not None and attachments:
            files = [{"name": a["name"], "content_type": a["content_type"], "size": a["size"], "sha256": a["sha256"]}
                     for a in attachments]
            files = tx.clean(files, ticket_id)
            tx.conn.executemany(
                "INSERT INTO attachments (ticket_id, message_id, name, content_type, size, sha256, received_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(ticket_id, message_id, f["name"], f["content_type"], f["size"], f["sha256"], tx.at) for f in files])
            tx.event(ticket_id, "attachments", {"files": files})

