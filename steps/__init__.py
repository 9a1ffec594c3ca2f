"""ZenML steps: thin, typed adapters over the `sftcast` library.

Each step reads its inputs, calls the library, logs to the active MLflow run (tagged for
lineage by `steps.lineage.track`) and returns typed outputs. Steps doing GPU work say so with
`extra={"gpu": True}`; the stack file decides where those run.
"""
