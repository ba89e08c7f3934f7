from campusvpn.cli.main import main

main()
