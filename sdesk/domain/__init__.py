"""The desk's rules and data, pure: no I/O, no storage, no UI (lifecycle, triage's building blocks, routing, SLAs, metrics, runbooks, roles, redaction)."""
