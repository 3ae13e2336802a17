"""Synthetic media for tests (re-exported from avfc.media.synthetic)."""

from avfc.media.synthetic import speech_like, talking_face, write_clip

__all__ = ["speech_like", "talking_face", "write_clip"]
