"""`python -m singularity`"""

import sys

from singularity.cli import main

sys.exit(main())
