"""avfc: generative face video coding with audio."""

from avfc.errors import AvfcError

__version__ = "0.1.0"

__all__ = ["AvfcError", "__version__"]
