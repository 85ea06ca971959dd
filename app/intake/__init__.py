"""What the CRM and HR systems push: directory records and HR events."""
