"""The page renderer: Jetstream results → a typed page model → jinja2/RMarkdown → R/ggplot2 → HTML.
Knows nothing of buckets or events: it reads from a ResultsSource and writes a folder."""
