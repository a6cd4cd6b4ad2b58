import sys

from capsjax.cli import main

sys.exit(main())
