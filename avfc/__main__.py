"""python -m avfc: the avfc command."""

import sys

from avfc.cli import main

sys.exit(main())
