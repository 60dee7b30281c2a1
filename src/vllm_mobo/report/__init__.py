"""What a finished run says: its tables, analysis text, figures, the LaTeX report and the exported configuration."""
