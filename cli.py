"""Thin entry point: ``python cli.py ARGS`` behaves exactly as ``reid-search ARGS``."""

from reid_search.cli import main

if __name__ == "__main__":
    main()
