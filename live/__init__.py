"""lvp stream: serving a live HLS stream, its player page and its steering."""
