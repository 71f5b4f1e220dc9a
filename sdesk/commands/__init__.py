"""Command groups of the sdesk CLI (`sdesk cmdb ...`, `sdesk kb ...`), registered by cli.py."""
