"""The command-line shell: parse arguments, call the layers below, print."""
