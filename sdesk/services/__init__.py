"""What time and people make the desk do over the store: tick (paging, escalation, SLA clocks), runbook runs, notification delivery, reports, the starter config."""
