"""`python -m transformers_clipflant5 ...` runs the `clip-flant5` command line (as launchers such as torchrun and
`accelerate launch -m` start it); the command line itself is `clip_flant5_cli`."""

from clip_flant5_cli import main


if __name__ == "__main__":
    main()
