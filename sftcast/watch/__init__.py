"""Watch a folder where a pre-training run writes checkpoints, and predict each one's post-SFT
standing as it lands, with the task's registered comparator (`sftcast watch`).

- `folder`: which checkpoint folders are completely written (ready), still being written
  (pending) or can never be used (rejected); their content hash and pre-training step;
- `config`: what one scoring run is given (`WatchConfig`);
- `pool`: the comparator in `production` and the labelled pool it was trained with;
- `scoring`: a checkpoint's predicted standing and chance of beating production (`WatchScore`);
- `records`: what MLflow holds of it: the scoring run's tags, the folder's growing figure, the
  `challenger` alias;
- `loop`: the polling, one claim per checkpoint, nothing scored twice.

Plain library: no ZenML (the CLI runs one `sftcast_watch` pipeline per checkpoint).
"""
