"""What arrives: payload formats, email, streamed input, enrichment, and the intake service that decides what each signal does."""
