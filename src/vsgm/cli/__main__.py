"""``python -m vsgm.cli``: the ``vsgm`` command (the workflow launches training this way)."""

import sys

from . import main

sys.exit(main())
