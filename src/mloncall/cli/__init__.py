"""The `mloncall` command: the root (`main`), `init` and `server` (`setup`), and `support` for every command."""
