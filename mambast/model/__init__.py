"""The Mamba-ST model, one concept per file: patch embedding, SS2D, ST-SS2D, blocks, CNN decoder."""

from .blocks import Decoder, DropPath, Encoder, MambaCore, STVSSBlock, VSSBlock, shuffle_tokens
from .cnn_decoder import CNNDecoder
from .mamba_st import MambaST, official_init_
from .patch_embed import PatchEmbed
from .ss2d import SS2D
from .st_ss2d import STSS2D

__all__ = ["MambaST", "PatchEmbed", "CNNDecoder", "SS2D", "STSS2D", "VSSBlock", "STVSSBlock", "Encoder",
           "Decoder", "MambaCore", "DropPath", "shuffle_tokens", "official_init_"]
