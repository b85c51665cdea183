"""Signing: document rendering, handwriting capture, PAdES sealing, signing links."""
