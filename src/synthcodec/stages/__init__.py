"""Stage logic: what each command runs, callable from Python (the commands only parse options)."""
