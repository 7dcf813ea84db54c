from synthcodec.cli import main

main()
