import sys

from jaxmlp.cli import main

sys.exit(main())
