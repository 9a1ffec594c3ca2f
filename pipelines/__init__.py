"""ZenML pipelines: they only wire steps. `registry.py` maps each command to its pipeline;
`run.py` is the command line's entry point for a checkout (the commands live in `cli/`)."""
