"""The `keras-lossopt` command line: `compare` and `search` (see `keras_lossopt.cli.main`)."""
