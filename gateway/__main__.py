"""`python -m gateway` is `omnigateway`."""

from gateway.cli import main

raise SystemExit(main())
