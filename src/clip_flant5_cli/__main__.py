"""`python -m clip_flant5_cli ...` runs the `clip-flant5` command line."""

from . import main


if __name__ == "__main__":
    main()
