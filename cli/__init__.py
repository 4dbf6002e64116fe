"""The `lvp` command line: the one package that knows every other."""
