"""Baselines for comparisons: an attention style-transfer network with StyTr2's layout."""

from .attention import AttentionST, AttentionSTConfig

__all__ = ["AttentionST", "AttentionSTConfig"]
