from facepic.cli import main

main()
