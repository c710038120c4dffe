"""Carriers: MM7 toward MMSCs (and the SMS connectors for the fallback leg)."""
