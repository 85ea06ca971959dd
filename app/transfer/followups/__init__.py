"""Follow-ups after a handover (first contact, check-in, satisfaction survey) and the retention they show."""
