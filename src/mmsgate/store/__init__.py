"""Storage: the only code that speaks SQL, plus the content-addressed blob store."""
