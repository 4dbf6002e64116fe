"""`lvp eval` and its judge: measuring backends, apart from what a render needs (a render
never imports this package)."""
