"""Reliability scenarios (issue 7): faults, HA, load and hostile input."""
