"""Audio-visual cross-modal coding (AVCC): speech-conditioned motion, context-coded audio, lips from speech.

All opt-in. Measured on av-eval the speech terms of the motion predictor save 0.1 % of the motion bits
and motion-conditioned audio saves nothing (docs/results.md, "Cross-modal features: status").

No torch in the decoding path: every predictor here runs in integer numpy arithmetic, so the
encoder and the decoder compute identical values on any machine (docs/bitstream.md, part F).
"""
