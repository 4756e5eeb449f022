"""``python -m artifactctl ...`` runs the binary."""

from artifactctl import _main

_main()
