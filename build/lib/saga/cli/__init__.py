"""The `saga` command line."""
