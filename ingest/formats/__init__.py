"""One module per family of formats; each loader turns a file into a LoadedFile."""
