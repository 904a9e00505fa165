"""``python -m voicebank.cli``."""

import sys

from . import main

sys.exit(main())
