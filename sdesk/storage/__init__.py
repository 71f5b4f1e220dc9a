"""The store's parts (one per area of the desk), the rows and the write transaction they share, migrations and the desk file format. SQL lives here and in sdesk/store.py only."""
