"""The Textual console. Only this package imports Textual or Rich."""
