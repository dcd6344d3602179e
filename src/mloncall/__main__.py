from mloncall.cli.main import main

main()
