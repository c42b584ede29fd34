"""Consistency checks of what syncer wrote: sampling, checking, figures (docs/consistency.md)."""
