"""sdesk: a service desk in the terminal."""

__version__ = "0.1.0"
