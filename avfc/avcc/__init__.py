"""Audio-visual cross-modal coding (AVCC): speech helps code motion, motion helps code speech.

No torch in the decoding path: every predictor here runs in integer numpy arithmetic, so the
encoder and the decoder compute identical values on any machine (docs/bitstream.md, part F).
"""
