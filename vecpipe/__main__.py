from vecpipe.launch import main

main()
