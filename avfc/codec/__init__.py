"""The codec layer: analysis, quantization, entropy coding and units, and the way back."""

from avfc.codec.decoder import Decoder, Issue
from avfc.codec.encoder import Encoder, EncoderStats, analyse, analyse_clip

__all__ = ["Encoder", "EncoderStats", "Decoder", "Issue", "analyse", "analyse_clip"]
