import sys

from dtmerge.realdata import main

sys.exit(main())
