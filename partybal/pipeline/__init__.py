"""The event pipeline: a results object → a render request → a Cloud Run job → a page, a status
record and the table of contents. Everything here runs on GCP (Cloud Functions and the job)."""
