"""kvmqa's pytest plugin comes in through its `pytest11` entry point (pip install -e . / ./run): nothing to
load here."""
