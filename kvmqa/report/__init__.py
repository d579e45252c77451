"""Reports only read results: results.json, the host x stage matrix (HTML and terminal)."""
