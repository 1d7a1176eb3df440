import sys

from dtmerge.demo.realdata import main

sys.exit(main())
