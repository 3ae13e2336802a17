"""Entropy layer: keypoint quantization and rANS coding of motion packets.

Integer tables only, so encoder and decoder agree bit for bit on any machine; coding goes
through constriction 0.5 (``perfect=False`` pinned). No torch here.
"""

from avfc.entropy.motion import (
    MAX_CHANNELS,
    MAX_FRAMES,
    decode_motion,
    encode_motion,
    estimate_motion_bits,
    max_motion_bytes,
)
from avfc.entropy.quant import DEFAULT_PRECISION, MAX_PRECISION, QMAX, dequantize, quantize, quantize_track
from avfc.entropy.sparse import interpolate_track, sparse_positions
from avfc.entropy.tables import laplace_table, motion_tables_digest

__all__ = [
    "DEFAULT_PRECISION",
    "MAX_CHANNELS",
    "MAX_FRAMES",
    "MAX_PRECISION",
    "QMAX",
    "decode_motion",
    "dequantize",
    "encode_motion",
    "estimate_motion_bits",
    "interpolate_track",
    "laplace_table",
    "max_motion_bytes",
    "motion_tables_digest",
    "quantize",
    "quantize_track",
    "sparse_positions",
]
