import sys

from phonepatch.services.cli import main

sys.exit(main())
