"""ZenML steps: thin, typed adapters over the `sftcast` library.

Each step reads its inputs, calls the library, logs to the active MLflow run (tagged for
lineage by `steps.lineage.track`) and returns typed outputs. Steps doing GPU work say so with
`extra={"gpu": True}`; the stack file decides where those run.

Who writes to MLflow: a step logs to its run what the library returns to it (or hands to an
`on_log`); library code writes to MLflow only in the `service` modules a step calls with its
`Lineage` (`sftcast.sft.service`, `sftcast.selection.service`), which register and promote
what they make and log to the step's run what happens inside them on the way.
"""
