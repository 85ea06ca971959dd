"""Each item's checklist entries and its two signatures: the rules (service) and their routes (router)."""
