"""``python -m vsgm``: the ``vsgm`` command."""

import sys

from .cli import main

sys.exit(main())
