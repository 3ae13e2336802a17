"""avfc: generative face video coding with audio.

>>> import avfc
>>> res = avfc.encode("talk.mp4", "talk.avfc", bitrate_kbps=4)   # doctest: +SKIP
>>> out = avfc.decode("talk.avfc", "talk.decoded.mp4")           # doctest: +SKIP

``avfc.bitstream`` and ``avfc.entropy`` import without torch; the rest loads lazily.
"""

from __future__ import annotations

from typing import Any

from avfc.errors import AvfcError

__version__ = "0.2.0"

_LAZY = {
    "encode": ("avfc.api", "encode"),
    "decode": ("avfc.api", "decode"),
    "EncodeResult": ("avfc.api", "EncodeResult"),
    "DecodeResult": ("avfc.api", "DecodeResult"),
    "EncoderConfig": ("avfc.config", "EncoderConfig"),
    "Encoder": ("avfc.codec", "Encoder"),
    "Decoder": ("avfc.codec", "Decoder"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        mod, attr = _LAZY[name]
        return getattr(importlib.import_module(mod), attr)
    raise AttributeError(f"module 'avfc' has no attribute {name!r}")


__all__ = ["AvfcError", "__version__", *_LAZY]
