"""The workflow's glue: command line, config, run records, tables, notebooks, Table 1 (imports the library; nothing in it imports this)."""
