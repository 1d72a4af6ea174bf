"""python -m componentx: the componentx command."""

from componentx.cli import main

main()
