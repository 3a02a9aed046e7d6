from omnicanal.cli import main

main()
