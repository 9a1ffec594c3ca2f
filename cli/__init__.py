"""sftcast's command line (typer): the `sftcast` console script, or `python pipelines/run.py`.

`app` assembles the commands: `pipelines` (data, zoo, sft, study, select, run by `running`),
`validate`, `judge` (compare, simulate), `registry` (rollback, ui), `services`; `render`
prints, `environment` sets the process up once, before any command's work.
"""
