import sys

from av_cli.main import main

sys.exit(main())
