"""Torch modules: the feature-wise shared sparse decoder, the dense decoder, the encoder."""

from .decoder import DenseDecoder, SparseDecoder, default_block_size, sparse_decoder_forward
from .encoder import GaussianEncoder

__all__ = [
    "DenseDecoder",
    "GaussianEncoder",
    "SparseDecoder",
    "default_block_size",
    "sparse_decoder_forward",
]
