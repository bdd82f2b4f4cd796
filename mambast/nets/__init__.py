"""Auxiliary networks: the frozen VGG loss network (training losses, CFSD)."""

from .vgg import TAPS, VGGEncoder, VGGWeightsError, load_vgg, save_vgg

__all__ = ["TAPS", "VGGEncoder", "VGGWeightsError", "load_vgg", "save_vgg"]
