from kloudctl.cli import main

main()
