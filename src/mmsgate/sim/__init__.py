"""The carrier simulator: an MM7 MMSC (and, later, an SMSC) whose outcomes follow the number."""
