"""Training Mamba-ST: the paper's objective, data pipeline, exact-resume checkpoints, DDP (issue 3).

    from mambast.train.losses import training_losses      # the four unweighted loss terms
    from mambast.train.loop import train                   # a full run from a TrainConfig
    from mambast.train.checkpoint import load_run_model    # the latest model of a run directory
"""

from .losses import LOSS_NAMES, LossWeights, total_loss, training_losses

__all__ = ["LOSS_NAMES", "LossWeights", "total_loss", "training_losses"]
