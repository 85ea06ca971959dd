"""Checklist templates per tier and the confidentiality step: the rules (service) and their routes (router)."""
