"""`python -m smsgate_cli` runs the `smsgate` command line."""

import sys

from smsgate_cli.main import main

sys.exit(main())
