"""Slide media: fetched by URL at accept time, then checked for type, size and integrity."""
