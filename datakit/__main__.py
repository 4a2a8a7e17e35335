from datakit.cli import main

main()
