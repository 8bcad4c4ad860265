from cellcheck.cli import main

main()
