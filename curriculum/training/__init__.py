"""How a stage trains: the stage loop, checkpoints, resume, LR schedule, batches, device and the run folder.

    trainer.py     train_stage: find where a stage starts (resume), then run it; the model config
    stage_loop.py  StageRun: one stage's training session: steps, evaluation, checkpoint writing
    types.py       what goes in and out: StageData, StageResult; events (StageStart, StepInfo, MetricsRow,
                   CheckpointInfo) and TrainListener, the base class of whatever receives them
    config.py      TrainConfig, the `train:` section of a run
    schedule.py    iterations from token counts; warmup + cosine learning rate, per stage or global
    batches.py     which windows form each batch, seeded and resumable
    checkpoints.py checkpoint folders written atomically and verified by checksum
    resume.py      which checkpoint a stage continues from
    run_dir.py     the run folder: fingerprint, metrics.jsonl, runtime.jsonl
    device.py      device, dtype and thread settings, resolved once
    progress.py    the terminal's progress bar per stage
    trackers.py    train.loggers: every metrics row also to TensorBoard and MLflow, on threads that never
                   hold training up; tensorboard_tracker.py and mlflow_tracker.py are the two trackers
    faults.py      a test-only pause point, so tests can kill training at an exact moment

Importing this package imports no torch; its modules that train do.
"""
