"""The parts of training, each with a name; ``alexnet.training`` is the loop that calls them.

optim        parameter groups (decay by role, per-layer factors) and the optimizer
schedule     the learning rate of every step (warm-up, step/cosine/..., the paper's plateau rule)
step         one optimizer step and one pass over an epoch, without waiting for the device
data         a config's training/validation sets, normalisation statistics, eval transform
finetune     --init and --freeze
checks       what is refused before any work
resume       what --resume may change, the run's progress, the position inside an epoch
runfolder    the files a run writes (config.toml, metrics.csv, curves.png, checkpoints)
evaluation   top-1/top-5 error, ten-crop, the confusion matrix
signals      Ctrl-C and SIGTERM: checkpoint, then stop
"""
