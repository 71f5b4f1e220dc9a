"""The terminal UI (`sdesk tui`): a live queue where an agent works tickets with the keyboard.
It calls the store and the domain modules; it holds no domain logic of its own."""
