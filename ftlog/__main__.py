from ftlog.cli import main

main()
