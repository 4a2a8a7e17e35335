"""Exports of a store to other tools ' layouts (nnU-Net)."""
