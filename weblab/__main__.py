"""python -m weblab == the weblab command."""
import sys

from weblab.cli import main

sys.exit(main())
