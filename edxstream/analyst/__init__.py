"""The analyst side: query, export and the course report."""
