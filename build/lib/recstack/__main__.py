from recstack.cli.main import main

main()
