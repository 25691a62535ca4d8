"""Reports: Markdown tables and PNG figures written to a folder."""
