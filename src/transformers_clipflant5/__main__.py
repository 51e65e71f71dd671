"""`python -m transformers_clipflant5 ...` runs the `clip-flant5` command line."""

from .cli import main


if __name__ == "__main__":
    main()
