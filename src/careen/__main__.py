from careen.cli.main import main

main()
