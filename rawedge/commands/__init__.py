"""The CLI's subcommands (registered by rawedge.cli)."""

MAX_THREADS = 256  # a typo such as --threads 100000 would otherwise spend minutes creating threads
