"""Workflow helpers live in tests/company.py (a pytest plugin, so every package's tests can use them)."""

from tests.company import EFFECTIVE, TIERS, approve, clients, employees, plan

__all__ = ["EFFECTIVE", "TIERS", "approve", "clients", "employees", "plan"]
