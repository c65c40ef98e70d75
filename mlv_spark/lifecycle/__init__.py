"""Experiment branches: open → write → validate → commit → merge → tag → delete."""
