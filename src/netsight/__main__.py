"""``python -m netsight ...`` runs the command line (same as the ``netsight`` script)."""

from netsight.cli import main

if __name__ == "__main__":
    main()
