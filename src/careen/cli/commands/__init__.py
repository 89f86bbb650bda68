"""One module per command or command group, each registered in :data:`careen.cli.main.COMMANDS`
and imported only when its command runs."""
