"""partybal: Jetstream experiment results rendered into a static site."""

__version__ = "0.1.0"
