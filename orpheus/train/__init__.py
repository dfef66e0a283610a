"""Training on a shard folder: the tf.data input (`input_pipeline`), distribution (`strategy`), precision,
learning-rate schedules, callbacks, and fine-tuning from a pretrained model or a run (`finetune`)."""
