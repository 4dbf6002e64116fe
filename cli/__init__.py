"""The `lvp` command line: the one package that knows every other."""

import time

# When lvp started, for every time a report gives: this package is the first thing the `lvp`
# script and `python -m cli` import. Not the process's start time: a shell runs the last
# command of `bash -c "setup && lvp render ..."` by exec, in a process that has lived as
# long as the setup. Only the interpreter's own start (about 0.1 s) is left out.
LAUNCHED = time.time()
