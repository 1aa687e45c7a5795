"""Turning what senders post into typed alerts, and alerts into incidents."""
