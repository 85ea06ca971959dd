"""Records owned alongside clients: the leaver's whole book of business, mirrored from the CRM."""
