"""``python -m rawedge.cli``: the same as the ``rawedge`` command."""
from rawedge.cli import main

main()
