from mloncall.cli import main

main()
