"""The ``lockstep`` command: thin parsing and printing over the other packages."""
