import sys

from evaluator.touchstone.reproduce import main

sys.exit(main())
