"""Reports: the JSON record (versioned schema), Markdown, and the terminal summary."""
