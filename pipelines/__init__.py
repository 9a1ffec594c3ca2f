"""ZenML pipelines (they only wire steps) and run.py, the one command-line entry."""
